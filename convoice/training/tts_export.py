"""``convoice export tts``: write a released version as a TTS training set.

What goes in and how it is laid out is decided in :mod:`convoice.models.tts_data`;
this module reads the release from the store (local or remote), resamples each
clip's FLAC to mono 16-bit WAV at ``settings.tts.sample_rate`` (``resample_poly``)
and writes, in the export folder:

- the layout of the format: ``ljspeech`` (``wavs/<id>.wav``, ``metadata.csv``
  ``id|text|text`` for training, ``metadata_eval.csv`` for the heldout clips),
  ``vctk`` (coqui's ``vctk_old`` formatter: ``txt/<speaker>/<id>.txt`` and
  ``wav48/<speaker>/<id>.wav``; heldout clips in the same layout under ``eval/``)
  or ``coqui`` (coqui's own ``coqui`` formatter: ``metadata.csv`` /
  ``metadata_eval.csv`` with ``audio_file|text|speaker_name``, audio under
  ``wavs/<speaker>/``);
- ``d_vectors.json``: coqui's ``d_vector_file`` (every clip's 256-d embedding);
- ``speakers.json``: one mean embedding per speaker (training clips);
- ``eval.csv``: the heldout clips (``file|speaker|text|language``) kept for evaluation;
- ``recordings.parquet`` and ``ATTRIBUTION.md`` of the recordings the clips
  come from (the same text ``convoice dataset pull`` writes), a ``README.md``,
  and ``export.json`` (release, format, rate, counts), written last.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.media.audio import read_encoded, to_mono, wav_bytes
from convoice.models import tts_data
from convoice.models.tts_data import Selection, TtsClip
from convoice.records import ReleaseClip
from convoice.storage.location import atomic_write
from convoice.storage.pull import attribution_text
from convoice.storage.releases import release_key
from convoice.storage.rows import release_clip_records

if TYPE_CHECKING:
    import pyarrow as pa

    from convoice.storage import Release, Store

EXPORT_MANIFEST = "export.json"
AUDIO_WORKERS = 4
CLIP_COLUMNS = ["clip_id", "recording_id", "speaker_id", "text", "language", "status", "split",
                "duration",
                "embedding", "audio_uri"]  # fmt: skip


class ExportError(RuntimeError):
    """The export cannot be written where asked; the message says why."""


@dataclass(frozen=True)
class TtsExport:
    """What :func:`export_release` wrote."""

    release: str  # "v3"
    format: str
    path: Path
    sample_rate: int
    n_train: int
    n_heldout: int
    n_speakers: int
    train_hours: float
    skipped: dict[str, int]  # reason -> clips left out
    n_recordings: int

    def summary(self) -> str:
        skipped = ", ".join(f"{k}: {v}" for k, v in self.skipped.items()) or "none"
        return (
            f"exported {self.release} as {self.format} into {self.path}: {self.n_train} training"
            f" clips ({self.train_hours:.3f} h), {self.n_heldout} heldout clips for evaluation,"
            f" {self.n_speakers} speakers, {self.n_recordings} recordings attributed,"
            f" {self.sample_rate} Hz mono WAV; left out: {skipped}"
        )


def read_release_clips(store: Store, release: Release) -> tuple[list[ReleaseClip], pa.Table]:
    """The release's clips (the export's columns) and its ``recordings`` table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    key = release_key(release.version)
    clips = pq.read_table(pa.BufferReader(store.location.read_bytes(f"{key}/clips.parquet")))
    missing = [c for c in CLIP_COLUMNS if c not in clips.column_names]
    if missing:
        raise tts_data.TtsDataError(f"release {release.name} has no columns {missing} in its clips")
    recordings = pq.read_table(
        pa.BufferReader(store.location.read_bytes(f"{key}/recordings.parquet"))
    )
    return release_clip_records(clips.select(CLIP_COLUMNS)), recordings


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 ``samples`` at ``rate`` resampled to ``target`` (polyphase filter)."""
    from scipy.signal import resample_poly

    mono = to_mono(samples)
    if rate == target:
        return mono.astype(np.float32)
    factor = gcd(rate, target)
    out = resample_poly(mono.astype(np.float64), target // factor, rate // factor)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def write_wav(store: Store, clip: TtsClip, target: Path, sample_rate: int) -> None:
    """The clip's audio from the store as mono 16-bit WAV at ``sample_rate``."""
    audio, rate = read_encoded(store.read_audio(clip.audio_uri))
    atomic_write(target, wav_bytes(resample(audio, rate, sample_rate), sample_rate))


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def check_folder(out: Path, release: str, fmt: str) -> bool:
    """Whether ``out`` holds an earlier export of ``release`` as ``fmt`` (to be replaced).

    False for a missing or empty folder; ExportError for a file, or a folder with
    anything else in it (never a folder mixing two exports, never someone's files).
    """
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    manifest = out / EXPORT_MANIFEST
    if not manifest.is_file():
        raise ExportError(f"{out} is not empty and holds no TTS export: choose an empty folder")
    earlier = json.loads(manifest.read_text())
    if (earlier.get("release"), earlier.get("format")) != (release, fmt):
        raise ExportError(
            f"{out} holds the {earlier.get('format')} export of {earlier.get('release')}:"
            f" choose another folder for the {fmt} export of {release}"
        )
    return True


def prepare_folder(out: Path, release: str, fmt: str) -> None:
    """Make ``out`` ready: new, empty, or an earlier export of the same release and format.

    The earlier export is removed (a release never changes, so the new one is the same).
    """
    if check_folder(out, release, fmt):
        (out / EXPORT_MANIFEST).unlink()  # incomplete until the new manifest is written
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _readme(release: Release, fmt: str, sample_rate: int, selection: Selection) -> str:
    loaders = {
        "ljspeech": 'BaseDatasetConfig(formatter="ljspeech", path=DIR,'
        ' meta_file_train="metadata.csv", meta_file_val="metadata_eval.csv",'
        ' dataset_name="convoice")',
        "vctk": 'BaseDatasetConfig(formatter="vctk_old", path=DIR, dataset_name="convoice")'
        "  # heldout: path=DIR/eval",
        "coqui": 'BaseDatasetConfig(formatter="coqui", path=DIR, meta_file_train="metadata.csv",'
        ' meta_file_val="metadata_eval.csv", dataset_name="convoice")',
    }
    counts = selection.counts()
    return f"""# Con Voice dataset {release.name} as a TTS training set ({fmt})

{counts["train"]} training clips and {counts["heldout"]} heldout clips (people reviewed them:
evaluate on them, do not train on them; listed in eval.csv), {counts["speakers"]} speakers,
mono 16-bit WAV at {sample_rate} Hz (resampled from the 16 kHz clips, so nothing above 8 kHz).
Only clips with status "accepted", a speaker and a text are here. Sources and licences:
ATTRIBUTION.md and recordings.parquet (Creative Commons: keep the attribution).

coqui-tts:

    {loaders[fmt]}
    VitsArgs(use_d_vector_file=True, d_vector_dim=256, d_vector_file=["DIR/d_vectors.json"])

d_vectors.json maps coqui's sample name ("convoice#<wav path without .wav>") to
{{"name": speaker, "embedding": [256 floats]}} (resemblyzer GE2E, unit norm);
speakers.json holds one mean embedding per speaker in the same shape.
"""


def export_release(
    store: Store, release: Release, fmt: str, out: Path, sample_rate: int = 22050
) -> TtsExport:
    """Write ``release`` into ``out`` as a TTS training set of format ``fmt`` (see module)."""
    tts_data.check_format(fmt)
    if sample_rate < 8000:
        raise ExportError(f"sample rate {sample_rate} Hz is too low for speech (at least 8000)")
    clips, recordings = read_release_clips(store, release)
    selection = tts_data.select_clips(clips)
    if not selection.train:
        raise tts_data.TtsDataError(
            f"release {release.name} has no accepted training clip with speaker and text"
            f" ({len(clips)} clips; left out: {selection.skipped})"
        )
    prepare_folder(out, release.name, fmt)
    jobs = [(clip, out / tts_data.export_relpath(clip, fmt)) for clip in selection.clips]
    with ThreadPoolExecutor(max_workers=AUDIO_WORKERS) as pool:
        list(pool.map(lambda job: write_wav(store, job[0], job[1], sample_rate), jobs))
    _write_lists(out, selection, fmt)
    used = _write_recordings(out, clips, recordings, selection)
    _write_text(out / "ATTRIBUTION.md", attribution_text(release, out))
    _write_text(out / "README.md", _readme(release, fmt, sample_rate, selection))
    counts = selection.counts()
    _write_json(
        out / EXPORT_MANIFEST,
        {"release": release.name, "format": fmt, "sample_rate": sample_rate,
         "dataset_name": tts_data.DATASET_NAME, "recordings": len(used), **counts},
    )  # fmt: skip
    return TtsExport(
        release=release.name,
        format=fmt,
        path=out,
        sample_rate=sample_rate,
        n_train=counts["train"],
        n_heldout=counts["heldout"],
        n_speakers=counts["speakers"],
        train_hours=counts["train_hours"],
        skipped=counts["skipped"],
        n_recordings=len(used),
    )


def _write_lists(out: Path, selection: Selection, fmt: str) -> None:
    """The texts (per clip for ``vctk``, else metadata files), eval list, d-vectors, speakers."""
    if fmt == "vctk":
        for clip in selection.clips:
            _write_text(out / tts_data.vctk_text_relpath(clip), clip.text + "\n")
    else:
        _write_text(out / "metadata.csv", _lines(tts_data.metadata_lines(selection.train, fmt)))
        _write_text(
            out / "metadata_eval.csv", _lines(tts_data.metadata_lines(selection.heldout, fmt))
        )
    _write_text(out / "eval.csv", _lines(tts_data.eval_lines(selection.heldout, fmt)))
    _write_json(out / "d_vectors.json", tts_data.d_vector_map(selection.clips, fmt))
    _write_json(out / "speakers.json", tts_data.speakers_file(selection))


def _write_recordings(
    out: Path, clips: list[ReleaseClip], recordings: pa.Table, selection: Selection
) -> list[str]:
    """``recordings.parquet``: the release's rows of the recordings the export uses; their ids."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    exported = _ids(selection)
    used = sorted({clip.recording_id for clip in clips if clip.clip_id in exported})
    recordings = recordings.filter(pc.is_in(recordings["recording_id"], pa.array(used)))
    pq.write_table(recordings, out / "recordings.parquet")
    return used


def _ids(selection: Selection) -> set[str]:
    return {clip.clip_id for clip in selection.clips}


def read_export(path: Path) -> dict[str, Any]:
    """An export's ``export.json``; ExportError when ``path`` holds no complete export."""
    manifest = path / EXPORT_MANIFEST
    if not manifest.is_file():
        raise ExportError(f"{path} holds no complete TTS export (no {EXPORT_MANIFEST})")
    data: dict[str, Any] = json.loads(manifest.read_text())
    return data
