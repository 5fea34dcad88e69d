"""The versioned store: Delta tables, immutable audio files and releases.

Layout under the root (a local folder or a URI such as ``s3://bucket/prefix``)::

    tables/recordings   tables/clips   tables/speakers   tables/skipped   tables/labels
    audio/recordings/<recording_id>.flac
    audio/clips/<recording_id>/<clip_id>.flac
    releases/v<N>/{clips,speakers,recordings,skipped}.parquet + manifest.json

Audio URIs recorded in rows are store keys (``audio/clips/...``), so a store
can move; :meth:`Store.audio_path` resolves them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from convoice.config import default_home
from convoice.records import (
    Clip,
    FloatArray,
    Provenance,
    Recording,
    Samples,
    SkippedItem,
    Speaker,
    StoredLabel,
)
from convoice.storage.labels import apply_labels, labels_to_table, now_iso, with_label_kinds
from convoice.storage.location import Location, clean_key
from convoice.storage.location import storage_options as location_storage_options
from convoice.storage.pull import KindFilter, PullResult, pull_release
from convoice.storage.releases import (
    Release,
    check_tag,
    clean_staging,
    latest_per,
    list_releases,
    read_release_table,
    release_changes,
    release_clips,
    release_speakers,
    resolve,
    write_release,
)
from convoice.storage.schema import (
    CLIP_SCHEMA,
    EMBEDDING_DIM,
    LABEL_SCHEMA,
    RECORDING_SCHEMA,
    SKIPPED_SCHEMA,
    SPEAKER_SCHEMA,
    clips_to_table,
    recordings_to_table,
    skipped_to_table,
    speakers_to_table,
    table_to_speakers,
    with_speaker_buckets,
)
from convoice.storage.tables import TABLES, Tables, sql_string

if TYPE_CHECKING:
    from convoice.config import Settings

AUDIO = "audio"
_FLAC_IN_MEMORY_S = 600  # longer audio is encoded through a temporary file, not a buffer
_FLAC_BLOCK_S = 600  # ... read and encoded this many seconds at a time


def latest_skips(skipped: pa.Table) -> pa.Table:
    """The latest row per item: per url, and per sources file and line for a bad row."""
    if skipped.num_rows == 0:
        return skipped
    line = pc.cast(skipped["line"], pa.string())
    where = pc.binary_join_element_wise(skipped["source_url"], line, "\x1f")  # null: no line
    key = pc.coalesce(pc.binary_join_element_wise(where, skipped["url"], "\x1f"), skipped["url"])
    keyed = skipped.append_column("_key", key)
    return latest_per(keyed, "_key", "at").drop_columns(["_key"]).sort_by("url")


class ConcurrentCommitError(RuntimeError):
    """Two processes updated the speaker registry at once; the later one must re-run.

    The registry is read, updated in memory and written back, so commits that
    touch it must not run in parallel; Delta detects the overlap and this is
    raised instead of losing an update.
    """


class Store:
    """One store root: the tables, the audio and the releases of a Con Voice dataset."""

    def __init__(self, root: str | Path, storage_options: dict[str, str] | None = None) -> None:
        self.location = Location(str(root), storage_options)
        self.tables = Tables(self.location)

    @classmethod
    def open(cls, settings: Settings, storage_options: dict[str, str] | None = None) -> Store:
        """The store at ``settings.home`` (``$CONVOICE_HOME`` or ``~/.convoice`` when empty).

        An ``s3://`` home is reached with ``settings.store`` (endpoint, region,
        plain http) and the AWS credentials in the environment, unless
        ``storage_options`` are given.
        """
        root = settings.home or default_home()
        if storage_options is None:
            storage_options = location_storage_options(root, settings.store)
        return cls(root, storage_options)

    @property
    def root(self) -> str:
        return self.location.root

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # -- audio ---------------------------------------------------------------

    @staticmethod
    def recording_audio_key(recording_id: str) -> str:
        return f"{AUDIO}/recordings/{recording_id}.flac"

    @staticmethod
    def clip_audio_key(recording_id: str, clip_id: str) -> str:
        return f"{AUDIO}/clips/{recording_id}/{clip_id}.flac"

    def write_audio(self, key: str, data: bytes) -> str:
        """Store ``data`` at ``key`` (under ``audio/``) atomically; returns its URI (the key)."""
        key = clean_key(key)
        if not key.startswith(f"{AUDIO}/"):
            raise ValueError(f"audio keys live under '{AUDIO}/', got {key!r}")
        self.location.write_bytes(key, data)
        return key

    def write_flac(self, key: str, samples: Samples, sample_rate: int) -> str:
        """Encode float samples (mono ``(n,)`` or ``(n, channels)``) as 16-bit FLAC at ``key``.

        ``samples``: an array, or samples read range by range
        (:class:`~convoice.media.audio.WavSamples`). Over ten minutes of them are
        encoded through a temporary file a block at a time, never held whole.
        """
        import soundfile

        if (isinstance(samples, np.ndarray) and samples.ndim not in (1, 2)) or len(samples) == 0:
            raise ValueError(
                "samples must be a non-empty (n,) or (n, channels) array, "
                f"got shape {getattr(samples, 'shape', (0,))}"
            )
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if len(samples) > _FLAC_IN_MEMORY_S * sample_rate:  # a whole recording: via a file
            return self._write_flac_file(key, samples, sample_rate, samples[0:1].shape[1:])
        array = np.asarray(samples[0 : len(samples)], dtype=np.float32)
        buffer = io.BytesIO()
        soundfile.write(buffer, array, sample_rate, format="FLAC", subtype="PCM_16")
        return self.write_audio(key, buffer.getvalue())

    def _write_flac_file(
        self, key: str, samples: Samples, sample_rate: int, channels: tuple[int, ...]
    ) -> str:
        """:meth:`write_flac` through a temporary file, ``_FLAC_BLOCK_S`` at a time."""
        import tempfile

        import soundfile

        key = clean_key(key)
        if not key.startswith(f"{AUDIO}/"):
            raise ValueError(f"audio keys live under '{AUDIO}/', got {key!r}")
        block = int(_FLAC_BLOCK_S * sample_rate)
        with tempfile.TemporaryDirectory(prefix="convoice-flac-") as tmp:
            path = Path(tmp) / "audio.flac"
            width = channels[0] if channels else 1
            with soundfile.SoundFile(
                path, "w", sample_rate, width, format="FLAC", subtype="PCM_16"
            ) as out:
                for start in range(0, len(samples), block):
                    out.write(np.asarray(samples[start : start + block], dtype=np.float32))
            self.location.put_file(path, key)
        return key

    def audio_path(self, uri: str) -> Path | str:
        """Where to read the audio ``uri``: a local Path, or a full URI for a remote store."""
        if "://" in uri:
            return uri
        if Path(uri).is_absolute():
            return Path(uri)
        return self.location.path(uri) if self.location.is_local else self.location.uri(uri)

    def read_audio(self, uri: str) -> bytes:
        """The bytes of the audio ``uri`` (a store key), local or remote."""
        return self.location.read_bytes(uri)

    # -- ingest --------------------------------------------------------------

    def done_recording_ids(self) -> set[str]:
        """Ids of the recordings committed completely (their row is the done marker)."""
        table = self.tables.read("recordings", RECORDING_SCHEMA, columns=["recording_id"])
        return set(table["recording_id"].to_pylist())

    def is_done(self, recording_id: str) -> bool:
        """Whether ``recording_id`` is committed (reads only files that may hold it)."""
        table = self.tables.read(
            "recordings",
            RECORDING_SCHEMA,
            columns=["recording_id"],
            where=("recording_id", recording_id),
        )
        return table.num_rows > 0

    def commit_recording(
        self,
        recording: Recording,
        clips: list[Clip],
        speakers: list[Speaker],
        provenance: Provenance,
        run_id: str,
    ) -> bool:
        """Store one recording's clips and speakers, then its row; False when done before.

        No step spans two tables, so each is made safe to repeat: the clips of
        the recording replace any left by a killed attempt (one commit), the
        speakers are upserted by id (their sums absorb a recording idempotently),
        and the recording row, written last, marks the whole as done.
        """
        _check_commit(recording, clips, speakers)
        if self.is_done(recording.recording_id):
            return False
        self._write_clips(recording.recording_id, clips, provenance, run_id)
        self._upsert_speakers(speakers)
        self.tables.append("recordings", recordings_to_table([recording]))
        return True

    def _write_clips(
        self, recording_id: str, clips: list[Clip], provenance: Provenance, run_id: str
    ) -> None:
        """Replace the clip rows of ``recording_id`` by ``clips`` in one commit."""
        table = clips_to_table(clips, provenance, run_id, now_iso())
        predicate = f"recording_id = {sql_string(recording_id)}"
        if table.num_rows or self.tables.open("clips") is not None:
            self.tables.replace_where("clips", table, predicate)

    def _upsert_speakers(self, speakers: list[Speaker]) -> None:
        from deltalake.exceptions import CommitFailedError

        if not speakers:
            return
        try:
            table = with_speaker_buckets(speakers_to_table(speakers))
            self.tables.upsert("speakers", table, "speaker_id")
        except CommitFailedError as err:
            raise ConcurrentCommitError(
                "another process changed the speaker registry during this commit; the"
                " recording is not marked done: match its speakers again and re-commit"
            ) from err

    def record_skipped(self, items: list[SkippedItem]) -> None:
        """Note items that were not ingested, and why (append-only; latest per url wins)."""
        if items:
            self.tables.append("skipped", skipped_to_table(items))

    # -- registry ------------------------------------------------------------

    def speakers(self) -> list[Speaker]:
        """The speaker registry, sorted by id."""
        return table_to_speakers(self.tables.read("speakers", SPEAKER_SCHEMA))

    def speaker_matrix(self) -> tuple[list[str], FloatArray]:
        """Speaker ids and their unit centroids as an ``(n, d)`` float32 matrix."""
        from convoice.models.registry import centroid_matrix

        return centroid_matrix(self.speakers(), EMBEDDING_DIM)

    # -- reading -------------------------------------------------------------

    def clips(self, version: int | None = None) -> pa.Table:
        """The machine's clip rows (at Delta ``version``), without people's labels.

        Rows written before per-kind statuses get them from their ``status``;
        speaker ids merged away since (by people or by consolidation) read as the
        id they live on as (:mod:`convoice.storage.identity`).
        """
        from convoice.storage.identity import machine_clips

        table = with_label_kinds(self.tables.read("clips", CLIP_SCHEMA, version=version))
        return machine_clips(self, table)

    def recordings(self) -> pa.Table:
        return self.tables.read("recordings", RECORDING_SCHEMA)

    def skipped(self) -> pa.Table:
        """Skipped items, the latest reason per url (and per line, for a sources file's row)."""
        return latest_skips(self.tables.read("skipped", SKIPPED_SCHEMA))

    def labels(self, version: int | None = None) -> pa.Table:
        """Every human label ever given, in the order written."""
        return self.tables.read("labels", LABEL_SCHEMA, version=version)

    def table_versions(self) -> dict[str, int | None]:
        """The latest Delta version of every table (None for tables not written yet)."""
        return {name: self.tables.version(name) for name in TABLES}

    # -- human labels --------------------------------------------------------

    def add_labels(self, rows: Iterable[StoredLabel | Mapping[str, Any]]) -> int:
        """Append people's labels (clip_id, field, value, labelled_by[, labelled_at, task_id]).

        Each a :class:`StoredLabel` (a pull's) or a row of those keys (a script's).
        ``field`` is ``speaker_id``, ``text`` or ``status``. Returns how many were added.
        """
        table = labels_to_table(rows)
        if table.num_rows:
            self.tables.append("labels", table)
        return table.num_rows

    def materialized_clips(
        self, version: int | None = None, labels_version: int | None = None
    ) -> pa.Table:
        """Clips with the latest human label of each field applied over the machine's."""
        from convoice.storage.identity import follow, identity_map

        labelled = apply_labels(self.clips(version), self.labels(labels_version))
        return follow(labelled, identity_map(self))

    # -- releases ------------------------------------------------------------

    def _pinned(
        self, name: str, schema: pa.Schema, version: int | None, columns: list[str] | None = None
    ) -> pa.Table:
        """Table ``name`` at ``version``; empty when it did not exist (``None``)."""
        if version is None:
            wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
            return wanted.empty_table()
        return self.tables.read(name, schema, version=version, columns=columns)

    def release(self, tag: str | None = None, note: str = "") -> Release:
        """Publish the current state as the next immutable release ``v<N>``."""
        existing = list_releases(self.location)
        check_tag(tag, existing)
        versions = self.table_versions()
        if versions["clips"] is None:
            raise ValueError("the store has no clips yet: there is nothing to release")
        from convoice.storage.identity import follow, identity_map, machine_clips
        from convoice.storage.identity import release_changes as identity_changes

        mapping = identity_map(self)
        clips = follow(
            apply_labels(
                machine_clips(self, self._pinned("clips", CLIP_SCHEMA, versions["clips"])),
                self._pinned("labels", LABEL_SCHEMA, versions["labels"]),
            ),
            mapping,
        )
        registry = self._pinned(
            "speakers", SPEAKER_SCHEMA, versions["speakers"], ["speaker_id", "label_source", "name"]
        )
        recordings = self._pinned("recordings", RECORDING_SCHEMA, versions["recordings"])
        skipped = self._pinned("skipped", SKIPPED_SCHEMA, versions["skipped"])
        content = {
            "clips.parquet": release_clips(clips),
            "speakers.parquet": release_speakers(clips, registry),
            "recordings.parquet": recordings.sort_by("recording_id"),
            "skipped.parquet": latest_skips(skipped),
            "speaker_changes.parquet": identity_changes(self),  # older releases' ids -> these
        }
        clean_staging(self.location)
        before = (
            read_release_table(
                self.location, existing[-1].version, "clips", ["clip_id", "text", "status"]
            )
            if existing
            else None
        )
        meta = {"tag": tag, "created_at": now_iso(), "note": note, "table_versions": versions,
                "changes": release_changes(before, content["clips.parquet"])}  # fmt: skip
        version = max((r.version for r in existing), default=0) + 1
        return write_release(self.location, version, content, meta)

    def releases(self) -> list[Release]:
        """Every release, oldest first."""
        return list_releases(self.location)

    def resolve(self, version_or_tag: str) -> Release:
        """The release named ``"v3"``, ``"3"`` or by its tag; UnknownReleaseError lists them."""
        return resolve(self.location, str(version_or_tag))

    def pull(
        self, version_or_tag: str, dest: str | Path, wanted: KindFilter | None = None
    ) -> PullResult:
        """Copy a release, its audio, attributions and a README into the folder ``dest``
        (with ``wanted``: only the clips whose label statuses it selects)."""
        return pull_release(self.location, self.resolve(version_or_tag), Path(dest), wanted)

    # -- maintenance ---------------------------------------------------------

    def compact(self) -> dict[str, Any]:
        """Merge the small files many commits leave (past versions stay readable)."""
        report: dict[str, Any] = {}
        for name in TABLES:
            table = self.tables.open(name)
            if table is not None:
                report[name] = table.optimize.compact()
        return report


def _check_commit(recording: Recording, clips: list[Clip], speakers: list[Speaker]) -> None:
    """ValueError when a commit's pieces do not belong together."""
    strangers = [c.clip_id for c in clips if c.recording_id != recording.recording_id]
    if strangers:
        raise ValueError(
            f"clips {strangers[:3]} do not belong to recording {recording.recording_id}"
        )
    for what, ids in (
        ("clip", [c.clip_id for c in clips]),
        ("speaker", [s.speaker_id for s in speakers]),
    ):
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate {what} ids in the commit of {recording.recording_id}")
