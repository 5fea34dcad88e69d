"""Pulling a release into a self-contained dataset folder.

The folder holds the release's Parquet files and manifest, the clips' audio
under ``audio/<recording_id>/<clip_id>.flac``, ``ATTRIBUTION.md`` and a
``README.md``. Pulling again into the same folder copies only what differs.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from convoice.records import LabelStatus
from convoice.storage.location import Location, atomic_write, clean_key, sha256_file
from convoice.storage.releases import MANIFEST, Release, release_key

AUDIO_WORKERS = 8


SURE = "sure"
KIND_VALUES = (*(s.value for s in LabelStatus), SURE)
"""What ``--speaker`` / ``--transcript`` accept; ``sure`` is accepted or labelled."""


@dataclass(frozen=True)
class KindFilter:
    """Which clips a pull keeps, by the status of each kind of label (empty: any)."""

    speaker: frozenset[str] = frozenset()
    transcript: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, speaker: str | None = None, transcript: str | None = None) -> KindFilter:
        """From comma-separated statuses (``"accepted,labelled"``); ValueError names a bad one."""
        return cls(_statuses(speaker, "speaker"), _statuses(transcript, "transcript"))

    def __bool__(self) -> bool:
        return bool(self.speaker or self.transcript)

    def describe(self) -> str:
        parts = [
            f"{kind} status in {{{', '.join(sorted(values))}}}"
            for kind, values in (("speaker", self.speaker), ("transcript", self.transcript))
            if values
        ]
        return " and ".join(parts) or "all clips"


def _statuses(text: str | None, kind: str) -> frozenset[str]:
    values = {v.strip() for v in (text or "").split(",") if v.strip()}
    bad = values - set(KIND_VALUES)
    if bad:
        raise ValueError(f"--{kind} {', '.join(sorted(bad))}: use {', '.join(KIND_VALUES)}")
    if SURE in values:
        values = (values - {SURE}) | {LabelStatus.ACCEPTED, LabelStatus.LABELLED}
    return frozenset(values)


def filter_clips(clips: pa.Table, wanted: KindFilter) -> pa.Table:
    """The rows of ``clips`` whose speaker and transcript statuses ``wanted`` keeps.

    A release made before per-kind statuses has only ``status``: both kinds are read from it.
    """
    import pyarrow.compute as pc

    status = pc.fill_null(clips["status"], "")
    keep = pa.array([True] * clips.num_rows)
    for kind, values in (
        ("speaker_status", wanted.speaker),
        ("transcript_status", wanted.transcript),
    ):
        if not values:
            continue
        column = clips[kind] if kind in clips.column_names else status
        column = pc.coalesce(column, status)
        keep = pc.and_(keep, pc.is_in(column, value_set=pa.array(sorted(values))))
    return clips.filter(keep)


@dataclass(frozen=True)
class PullResult:
    """What :meth:`Store.pull` put where."""

    release: Release
    path: Path  # the dataset folder
    n_clips: int
    copied: int  # files copied (parquet and audio)
    skipped: int  # files already there and identical


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def _pull_tables(location: Location, key: str, manifest: dict[str, Any], dest: Path) -> int:
    """Copy the Parquet files, verified against the manifest; returns how many were copied."""
    copied = 0
    for name, info in manifest["files"].items():
        target = dest / clean_key(name)
        if target.is_file() and sha256_file(target) == info["sha256"]:
            continue
        try:
            location.download(f"{key}/{name}", target, sha256=info["sha256"])
        except ValueError as err:
            raise ValueError(f"release v{manifest['version']} is corrupt: {err}") from err
        copied += 1
    return copied


def _pull_one(location: Location, source: str, target: Path) -> bool:
    """Copy one clip's audio unless an identical-size copy is there (store audio is immutable)."""
    size = location.size(source)
    if size is None:
        raise FileNotFoundError(f"the audio of a released clip is missing: {location.uri(source)}")
    if target.is_file() and target.stat().st_size == size:
        return False
    location.download(source, target)
    return True


def _pull_audio(location: Location, dest: Path) -> tuple[int, int]:
    """Copy every clip's audio; returns (clips, files copied)."""
    import pyarrow.parquet as pq

    clips = pq.read_table(dest / "clips.parquet", columns=["audio_uri", "audio_path"])
    jobs = [
        (clean_key(source), dest / clean_key(path))
        for source, path in zip(
            clips["audio_uri"].to_pylist(), clips["audio_path"].to_pylist(), strict=True
        )
    ]
    with ThreadPoolExecutor(max_workers=AUDIO_WORKERS) as pool:
        copied = sum(pool.map(lambda job: _pull_one(location, *job), jobs))
    return len(jobs), int(copied)


def attribution_text(release: Release, dest: Path) -> str:
    """``ATTRIBUTION.md``: one line per recording, its Creative Commons attribution."""
    import pyarrow.parquet as pq

    recordings = pq.read_table(
        dest / "recordings.parquet", columns=["title", "uploader", "url", "license", "attribution"]
    ).to_pylist()
    lines = [
        f"# Attribution: Con Voice dataset {release.name}",
        "",
        "This dataset is derived from the following Creative Commons recordings",
        "(cut into clips and labelled). One line per recording:",
        "",
    ]
    for row in recordings:
        fallback = (
            f"\u201c{row['title']}\u201d by {row['uploader']}, {row['license']}, {row['url']}"
        )
        lines.append(f"- {row['attribution'] or fallback}")
    return "\n".join(lines) + "\n"


def readme_text(release: Release, wanted: KindFilter | None = None) -> str:
    """``README.md``: what the folder holds and how to load it."""
    tag = f" ({release.tag})" if release.tag else ""
    note = f"\n{release.note.strip()}\n" if release.note.strip() else ""
    if wanted:
        note += f"\nPulled with a filter: only clips with {wanted.describe()}.\n"
    return f"""# Con Voice dataset {release.name}{tag}

{release.n_clips} clips, {release.hours:.2f} hours, {release.n_speakers} speakers, from
{release.n_recordings} Creative Commons recordings: see ATTRIBUTION.md, and the
licence and attribution columns of recordings.parquet.
{note}
- `clips.parquet`: one row per clip: speaker_id, text, words, status
  ("accepted", "review", "rejected"), `speaker_status` and `transcript_status`
  (each label on its own: "accepted" by the machine at its target precision,
  "review", "labelled" by a person, "rejected"), who labelled it (machine or human),
  provenance, `audio_path`, the clip's FLAC relative to this folder, and
  `split`: "heldout" for clips a person reviewed (evaluate on them), else "train".
- `speakers.parquet`, `recordings.parquet`, `skipped.parquet`, and
  `manifest.json` (counts, and the sha256 of every Parquet file).

## Load (from this folder)

pandas:

    import pandas as pd
    clips = pd.read_parquet("clips.parquet")
    accepted = clips[clips.status == "accepted"]

pyarrow and soundfile:

    import pyarrow.parquet as pq, soundfile
    clips = pq.read_table("clips.parquet")
    samples, rate = soundfile.read(clips["audio_path"][0].as_py())

Hugging Face datasets (decoding `Audio` needs `datasets[audio]`):

    from datasets import Audio, load_dataset
    ds = load_dataset("parquet", data_files={{"train": "clips.parquet"}})["train"]
    ds = ds.cast_column("audio_path", Audio(sampling_rate=16000))
"""


def _filter_pulled(dest: Path, wanted: KindFilter) -> None:
    """Keep only the clips ``wanted`` selects in the pulled ``clips.parquet``; note it."""
    import pyarrow.parquet as pq

    clips = filter_clips(pq.read_table(dest / "clips.parquet"), wanted)
    pq.write_table(clips, dest / "clips.parquet")
    note = {"filter": wanted.describe(), "clips": clips.num_rows}
    _write_if_changed(dest / PULL_FILTER, json.dumps(note, indent=2).encode())


PULL_FILTER = "pull-filter.json"


def pull_release(
    location: Location, release: Release, dest: Path, wanted: KindFilter | None = None
) -> PullResult:
    """Copy ``release`` with its audio into ``dest`` (see the module docstring).

    With ``wanted``, ``clips.parquet`` keeps only the clips whose speaker and
    transcript statuses it selects (only their audio is copied), and
    ``pull-filter.json`` says so; the manifest still describes the whole release.
    """
    key = release_key(release.version)
    manifest_bytes = location.read_bytes(f"{key}/{MANIFEST}")
    manifest = json.loads(manifest_bytes)
    dest.mkdir(parents=True, exist_ok=True)
    copied = _pull_tables(location, key, manifest, dest)
    if wanted:
        _filter_pulled(dest, wanted)
    elif (dest / PULL_FILTER).exists():
        (dest / PULL_FILTER).unlink()
    n_clips, audio_copied = _pull_audio(location, dest)
    _write_if_changed(dest / "ATTRIBUTION.md", attribution_text(release, dest).encode())
    _write_if_changed(dest / "README.md", readme_text(release, wanted).encode())
    copied += audio_copied + _write_if_changed(dest / MANIFEST, manifest_bytes)  # last: complete
    total = len(manifest["files"]) + n_clips + 1
    return PullResult(
        release=release, path=dest, n_clips=n_clips, copied=copied, skipped=total - copied
    )
