"""Releases: numbered, immutable snapshots of the store as plain Parquet.

``releases/v<N>/`` holds ``clips.parquet``, ``speakers.parquet``,
``recordings.parquet``, ``skipped.parquet`` and ``manifest.json``. The
manifest is written last and names the sha256 of every file: a folder without
one is not a release. A release is never rewritten, whatever is ingested later.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import convoice
from convoice.records import ClipStatus, LabelSource, ReleaseSplit
from convoice.storage.location import Location, sha256_file
from convoice.storage.schema import RELEASE_SPEAKER_SCHEMA, vectors

RELEASES = "releases"
MANIFEST = "manifest.json"
FORMAT = 1
_VERSION = re.compile(r"^v?(\d+)$")
_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")


class UnknownReleaseError(LookupError):
    """No release has the version or tag asked for."""


@dataclass(frozen=True)
class Release:
    """One published release, as its manifest describes it."""

    version: int
    tag: str | None
    created_at: str
    note: str
    n_clips: int
    n_recordings: int
    n_speakers: int
    hours: float
    clips_by_status: dict[str, int] = field(default_factory=dict)
    table_versions: dict[str, int | None] = field(default_factory=dict)
    path: str = ""
    changes: dict[str, Any] = field(
        default_factory=dict
    )  # against the release before  # the release folder (a local path or a URI)

    @property
    def name(self) -> str:
        return f"v{self.version}"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], path: str) -> Release:
        counts = manifest["counts"]
        return cls(
            version=int(manifest["version"]),
            tag=manifest.get("tag"),
            created_at=manifest["created_at"],
            note=manifest.get("note", ""),
            n_clips=int(counts["clips"]),
            n_recordings=int(counts["recordings"]),
            n_speakers=int(counts["speakers"]),
            hours=float(manifest["hours"]),
            clips_by_status=dict(manifest.get("clips_by_status", {})),
            changes=dict(manifest.get("changes", {})),
            table_versions=dict(manifest.get("table_versions", {})),
            path=path,
        )


def release_key(version: int) -> str:
    return f"{RELEASES}/v{version}"


def read_manifest(location: Location, version: int) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(location.read_bytes(f"{release_key(version)}/{MANIFEST}"))
    return manifest


def read_release_table(
    location: Location, version: int, name: str, columns: list[str] | None = None
) -> pa.Table:
    """One Parquet file of release ``version`` (``"clips"``, ``"recordings"``, ...)."""
    import pyarrow.parquet as pq

    data = location.read_bytes(f"{release_key(version)}/{name}.parquet")
    return pq.read_table(pa.BufferReader(data), columns=columns)


def release_changes(previous: pa.Table | None, clips: pa.Table) -> dict[str, Any]:
    """What changed since the release before: clips whose text changed, review share both times.

    ``previous``, ``clips``: ``clip_id``, ``text``, ``status`` of both releases'
    clips (``previous`` None for the first release).
    """
    share = lambda t: round(pc.mean(pc.equal(t["status"], ClipStatus.REVIEW)).as_py() or 0.0, 4)  # noqa: E731
    if previous is None:
        return {"review_share": share(clips)} if clips.num_rows else {}
    old = dict(zip(previous["clip_id"].to_pylist(), previous["text"].to_pylist(), strict=True))
    changed = [
        cid
        for cid, text in zip(clips["clip_id"].to_pylist(), clips["text"].to_pylist(), strict=True)
        if cid in old and old[cid] != text
    ]
    return {
        "text_changed": len(changed),
        "text_changed_clips": changed[:50],
        "new_clips": sum(cid not in old for cid in clips["clip_id"].to_pylist()),
        "review_share_before": share(previous) if previous.num_rows else 0.0,
        "review_share": share(clips) if clips.num_rows else 0.0,
    }


def list_releases(location: Location) -> list[Release]:
    """Every complete release, oldest first."""
    found = []
    for name in location.list_dirs(RELEASES):
        match = re.fullmatch(r"v(\d+)", name)
        if match and location.exists(f"{RELEASES}/{name}/{MANIFEST}"):
            version = int(match.group(1))
            found.append(
                Release.from_manifest(
                    read_manifest(location, version), location.uri(release_key(version))
                )
            )
    return sorted(found, key=lambda release: release.version)


def describe(releases: list[Release]) -> str:
    """``v1, v2 (tag: spring)`` or a hint when there are none."""
    if not releases:
        return "there are no releases yet (make one with Store.release())"
    names = [r.name + (f" (tag: {r.tag})" if r.tag else "") for r in releases]
    return "available: " + ", ".join(names)


def resolve(location: Location, ref: str) -> Release:
    """The release named ``ref``: ``"v3"``, ``"3"`` or a tag."""
    releases = list_releases(location)
    match = _VERSION.fullmatch(ref.strip())
    for release in releases:
        if (match and release.version == int(match.group(1))) or release.tag == ref:
            return release
    raise UnknownReleaseError(f"no release {ref!r}; {describe(releases)}")


def check_tag(tag: str | None, releases: list[Release]) -> None:
    """ValueError when ``tag`` is malformed or already names a release."""
    if tag is None:
        return
    if not _TAG.fullmatch(tag) or _VERSION.fullmatch(tag):
        raise ValueError(
            f"invalid release tag {tag!r}: start with a letter, use letters, digits, '.', '_',"
            " '-' (at most 64), and do not look like a version (v3)"
        )
    for release in releases:
        if release.tag == tag:
            raise ValueError(f"tag {tag!r} is already used by release {release.name}")


def release_clips(clips: pa.Table) -> pa.Table:
    """Released clip rows: sorted, with ``audio_path`` relative to a pulled dataset."""
    missing = pc.sum(pc.equal(pc.fill_null(clips["audio_uri"], ""), "")).as_py() or 0
    if missing:
        raise ValueError(f"{missing} clips have no audio_uri; every released clip needs its audio")
    clips = clips.sort_by([("recording_id", "ascending"), ("start", "ascending")])
    paths = [
        f"audio/{recording}/{clip}.flac"
        for recording, clip in zip(
            clips["recording_id"].to_pylist(), clips["clip_id"].to_pylist(), strict=True
        )
    ]
    clips = clips.append_column("audio_path", pa.array(paths, pa.string()))
    return clips.append_column("split", heldout_split(clips))


def heldout_split(clips: pa.Table) -> pa.ChunkedArray:
    """``heldout`` for clips a person labelled (kept apart to evaluate models), else ``train``."""
    human = pc.not_equal(pc.fill_null(clips["labelled_by"], ""), "")
    heldout, train = pa.scalar(str(ReleaseSplit.HELDOUT)), pa.scalar(str(ReleaseSplit.TRAIN))
    split: pa.ChunkedArray = pc.if_else(human, heldout, train)
    return split


def release_speakers(clips: pa.Table, registry: pa.Table) -> pa.Table:
    """Speaker rows computed from the released clips (rejected clips do not count).

    ``registry`` gives each speaker's ``label_source`` and ``name``.
    """
    usable = clips.filter(
        pc.and_(
            pc.not_equal(pc.fill_null(clips["status"], ""), str(ClipStatus.REJECTED)),
            pc.not_equal(pc.fill_null(clips["speaker_id"], ""), ""),
        )
    )
    if usable.num_rows == 0:
        return RELEASE_SPEAKER_SCHEMA.empty_table()
    ids, codes = np.unique(np.asarray(usable["speaker_id"].to_pylist()), return_inverse=True)
    embeddings = vectors(usable["embedding"], "clip embeddings").astype(np.float64)
    sums = np.zeros((len(ids), embeddings.shape[1]))
    np.add.at(sums, codes, embeddings)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    centroids = (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    _, recording_codes = np.unique(
        np.asarray(usable["recording_id"].to_pylist()), return_inverse=True
    )
    pairs = np.unique(np.stack([codes, recording_codes]), axis=1)
    known = dict(
        zip(
            registry["speaker_id"].to_pylist(),
            zip(registry["label_source"].to_pylist(), registry["name"].to_pylist(), strict=True),
            strict=True,
        )
    )
    machine = (str(LabelSource.MACHINE), "")
    return pa.table(
        {
            "speaker_id": pa.array(ids.tolist(), pa.string()),
            "centroid": pa.array(list(centroids), RELEASE_SPEAKER_SCHEMA.field("centroid").type),
            "n_clips": np.bincount(codes, minlength=len(ids)).astype(np.int64),
            "total_duration": np.bincount(
                codes, weights=usable["duration"].to_numpy(), minlength=len(ids)
            ),
            "n_recordings": np.bincount(pairs[0], minlength=len(ids)).astype(np.int64),
            "label_source": [known.get(s, machine)[0] or machine[0] for s in ids.tolist()],
            "name": [known.get(s, machine)[1] or "" for s in ids.tolist()],
        },
        schema=RELEASE_SPEAKER_SCHEMA,
    )


def latest_per(table: pa.Table, key: str, order: str) -> pa.Table:
    """The last row per ``key`` by ``order`` (then by position), sorted by ``key``."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    ordered = indexed.sort_by([(key, "ascending"), (order, "ascending"), ("_row", "ascending")])
    keys = ordered[key].to_numpy(zero_copy_only=False)
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    return ordered.filter(pa.array(last)).drop_columns(["_row"])


def _summary(content: dict[str, pa.Table]) -> dict[str, Any]:
    clips = content["clips.parquet"]
    statuses = clips["status"].to_pylist()
    seconds = pc.sum(clips["duration"]).as_py() or 0.0
    return {
        "counts": {name.removesuffix(".parquet"): t.num_rows for name, t in content.items()},
        "hours": round(seconds / 3600.0, 6),
        "clips_by_status": {s: statuses.count(s) for s in sorted(set(statuses))},
        **{
            f"clips_by_{kind}": _counts(clips[kind].to_pylist())
            for kind in ("speaker_status", "transcript_status")
            if kind in clips.column_names
        },
    }


def _counts(values: list[Any]) -> dict[str, int]:
    return {str(v): values.count(v) for v in sorted({v for v in values if v is not None})}


def write_release(
    location: Location,
    version: int,
    content: dict[str, pa.Table],
    meta: dict[str, Any],
) -> Release:
    """Write ``content`` (file name -> table) and its manifest as release ``version``.

    Built in a staging folder published in one rename (local stores), so a
    killed release never leaves a partial ``v<N>``.
    """
    import pyarrow.parquet as pq

    final = release_key(version)
    if location.exists(f"{final}/{MANIFEST}"):
        raise FileExistsError(f"release v{version} exists already")
    location.delete_dir(final)  # a remote release killed before its manifest
    staging = location.staging_key(final)
    files: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="convoice-release-") as tmp:
            for name, table in content.items():
                local = Path(tmp, name)
                pq.write_table(table, local)
                files[name] = {
                    "sha256": sha256_file(local),
                    "bytes": local.stat().st_size,
                    "rows": table.num_rows,
                }
                location.put_file(local, f"{staging}/{name}")
        manifest = {
            "format": FORMAT,
            "version": version,
            **meta,
            "convoice_version": convoice.__version__,
            **_summary(content),
            "files": files,
        }
        location.write_bytes(f"{staging}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
        location.publish(staging, final)
    except BaseException:
        if staging != final:
            location.delete_dir(staging)
        raise
    return Release.from_manifest(manifest, location.uri(final))


def clean_staging(location: Location) -> None:
    """Remove staging folders left by killed releases."""
    for name in location.list_dirs(RELEASES):
        if name.startswith(".tmp-"):
            location.delete_dir(f"{RELEASES}/{name}")
