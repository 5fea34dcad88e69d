"""Review audio: where it lives in the store, how Label Studio reaches it, and writing it.

Label Studio reads the review audio (``audio/review/<clip_id>.flac`` in the
store) through a storage of the project: local files for a local store (or a
copy under ``review.document_root``), an S3 storage for an ``s3://`` store.
Each task's audio is its clip with some context either side; each candidate
speaker's reference clip lies beside it (``audio/review/speakers/``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from convoice.records import Recording, StoredClip
from convoice.review.layout import Reference, context_window

if TYPE_CHECKING:
    from convoice.config import Settings
    from convoice.review.client import ReviewClient
    from convoice.storage import Store

REVIEW_AUDIO = "audio/review"
REFERENCE_AUDIO = f"{REVIEW_AUDIO}/speakers"  # <speaker_id>/<clip_id>.flac: served alike
ENDPOINT_OF_LABEL_STUDIO = "env"  # review.s3_endpoint: none given, Label Studio's $S3_ENDPOINT
_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
}


@dataclass(frozen=True)
class S3Audio:
    """The S3 storage through which Label Studio serves the review audio of an s3:// store.

    Tasks name their audio ``s3://<bucket>/<prefix>/<file>``; Label Studio
    resolves it through this storage: it streams the object itself
    (``presign`` False) or redirects the browser to a presigned URL on
    ``endpoint``. Never synced: Con Voice makes the tasks itself.
    """

    bucket: str
    prefix: str  # of the review audio in the bucket, without a slash at either end
    endpoint: str  # as Label Studio reaches it; "" = Label Studio's own $S3_ENDPOINT (or AWS)
    region: str  # "" = Label Studio's default
    presign: bool
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)  # SDK field names

    def fields(self) -> dict[str, Any]:
        """The storage fields Con Voice sets, credentials apart (SDK argument names)."""
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "s3endpoint": self.endpoint,
            "region_name": self.region,
            "presign": self.presign,
            "use_blob_urls": True,
        }

    def differs(self, storage: Any) -> bool:
        """Whether the storage ``storage`` (as Label Studio lists it) needs an update."""
        return any(
            (getattr(storage, name, None) or type(value)()) != value
            for name, value in self.fields().items()
        )


def aws_credentials(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine's AWS credentials as storage fields (empty: Label Studio uses its own)."""
    env = os.environ if environ is None else environ
    return {name: env[var] for var, name in _AWS_CREDENTIALS.items() if env.get(var)}


def s3_audio(
    settings: Settings, store: Store, environ: Mapping[str, str] | None = None
) -> S3Audio | None:
    """The S3 storage of the review audio; None when Label Studio reads it as local files.

    Local files: a local store, or any store with ``review.document_root`` (where
    Label Studio sees the store, or a copy of it, on its own disk).
    """
    from convoice.config import ConfigError

    if store.location.is_local or settings.review.document_root:
        return None
    if not store.root.startswith("s3://"):
        raise ConfigError(
            f"review audio of the store {store.root}: Label Studio reads s3:// stores or local"
            " files; set review.document_root to where Label Studio sees a copy of the store"
        )
    env = os.environ if environ is None else environ
    bucket, _, prefix = store.root.removeprefix("s3://").partition("/")
    cfg = settings.review
    endpoint = cfg.s3_endpoint or settings.store.endpoint_url
    if cfg.s3_endpoint == ENDPOINT_OF_LABEL_STUDIO:
        endpoint = ""
    region = settings.store.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION", "")
    return S3Audio(
        bucket=bucket,
        prefix="/".join(part for part in (prefix.strip("/"), REVIEW_AUDIO) if part),
        endpoint=endpoint,
        region=region,
        presign=cfg.s3_presign,
        credentials=aws_credentials(env),
    )


def audio_url(store: Store, key: str, s3: bool) -> str:
    """The task's audio for the store key ``key``: what the project's storage resolves."""
    return store.location.uri(key) if s3 else f"/data/local-files/?d={quote(key)}"


def connect_audio(client: ReviewClient, project_id: int, settings: Settings, store: Store) -> None:
    """Let the project's Label Studio serve the review audio (call once some audio exists).

    An S3 storage is checked against its prefix when made, so it needs a file
    there; local files need the folder, made here for a local store.
    """
    target = s3_audio(settings, store)
    if target is None:
        client.ensure_local_storage(project_id, ensure_audio_folder(settings, store))
    else:
        client.ensure_s3_storage(project_id, target)


def ensure_audio_folder(settings: Settings, store: Store) -> str:
    """The review audio folder as the server sees it (made when the store is local)."""
    if store.location.is_local:
        store.location.path(REVIEW_AUDIO).mkdir(parents=True, exist_ok=True)
    return str(Path(settings.review.document_root or store.root) / REVIEW_AUDIO)


def write_context_audio(
    store: Store, row: StoredClip, recording: Recording, context_s: float
) -> tuple[str, float]:
    """``audio/review/<clip_id>.flac``: the clip ± ``context_s`` from the recording's FLAC.

    Returns its store key and where it starts in the recording. Written once:
    the recording and the clip bounds never change, so neither does the file.
    """
    import soundfile

    start, end = context_window(
        float(row.start), float(row.end), float(recording.duration), context_s
    )
    key = f"{REVIEW_AUDIO}/{row.clip_id}.flac"
    if store.location.exists(key):
        return key, start
    rate = int(recording.sample_rate)
    source = store.audio_path(recording.audio_uri)
    first, last = round(start * rate), round(end * rate)
    if isinstance(source, Path):
        samples, rate = soundfile.read(source, start=first, stop=last, dtype="float32")
    else:
        import io

        whole, rate = soundfile.read(
            io.BytesIO(store.read_audio(recording.audio_uri)), dtype="float32"
        )
        samples = whole[first:last]
    if len(samples) == 0:
        raise ValueError(f"clip {row.clip_id}: no audio in the recording at {start:.2f} s")
    store.write_flac(key, samples, rate)
    return key, start


def write_reference_audio(store: Store, ref: Reference) -> str:
    """``audio/review/speakers/<speaker>/<clip>.flac``: the reference clip, cut to its length.

    Beside the task audio, so the project's storage serves it the same way.
    Written once (a clip's audio never changes); returns the store key.
    """
    import io

    import soundfile

    key = f"{REFERENCE_AUDIO}/{ref.speaker_id}/{ref.clip_id}.flac"
    if store.location.exists(key):
        return key
    source = store.audio_path(ref.audio_uri)
    handle = source if isinstance(source, Path) else io.BytesIO(store.read_audio(ref.audio_uri))
    with soundfile.SoundFile(handle) as audio:
        rate = audio.samplerate
        samples = audio.read(frames=round(ref.duration * rate), dtype="float32")
    if len(samples) == 0:
        raise ValueError(f"reference clip {ref.clip_id} of {ref.speaker_id} has no audio")
    store.write_flac(key, samples, rate)
    return key
