"""Label Studio I/O: the client with retries, review audio with context, and task building.

Label Studio reads the review audio (``audio/review/<clip_id>.flac`` in the
store) through a storage of the project: local files for a local store (or a
copy under ``review.document_root``), an S3 storage for an ``s3://`` store.

Every call goes through :meth:`ReviewClient.call`: connection failures,
timeouts, 429 and 5xx answers are retried with exponential backoff; anything
else, or a server that stays down, becomes a :class:`ReviewServerError` whose
message says what failed and what to do. The API token is sent in a header and
never appears in a message or a log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import numpy as np

from convoice.records import identity_vector
from convoice.review import server as review_server
from convoice.review.layout import (
    Reference,
    SpeakerOption,
    context_window,
    speaker_options,
    task_payload,
)

if TYPE_CHECKING:
    from convoice.config import Settings
    from convoice.storage import Store

T = TypeVar("T")
REVIEW_AUDIO = "audio/review"
REFERENCE_AUDIO = f"{REVIEW_AUDIO}/speakers"  # <speaker_id>/<clip_id>.flac: served alike
PAGE_SIZE = 500
STORAGE_TITLE = "Con Voice review audio"
ENDPOINT_OF_LABEL_STUDIO = "env"  # review.s3_endpoint: none given, Label Studio's $S3_ENDPOINT
_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
}


class ReviewServerError(RuntimeError):
    """Label Studio is unreachable, too slow, or refused a request."""


@dataclass(frozen=True)
class Connection:
    url: str
    token: str = field(repr=False)
    local: bool = False


def local_server(settings: Settings, store: Store) -> review_server.LocalServer:
    """The local Label Studio of this store: data under ``<store root>/labelstudio``."""
    if not store.location.is_local and not settings.review.document_root:
        raise ReviewServerError(
            f"the store {store.root} is not local: a local Label Studio serves review audio from"
            " local files; run it next to a local copy and set review.document_root, or set"
            " review.url to a Label Studio that reaches the store"
        )
    root = Path(settings.review.document_root or store.root)
    data_dir = Path(store.root) / "labelstudio" if store.location.is_local else root / "labelstudio"
    return review_server.LocalServer(data_dir, root, settings.review.port)


def connection(settings: Settings, store: Store) -> Connection:
    """The Label Studio to talk to and its token (settings, environment or local server)."""
    cfg = settings.review
    token = cfg.token or os.environ.get("LABEL_STUDIO_API_KEY", "")
    if cfg.url:
        if not token:
            raise ReviewServerError(
                f"no API token for {cfg.url}: set $LABEL_STUDIO_API_KEY or $CONVOICE_REVIEW__TOKEN"
            )
        return Connection(cfg.url.rstrip("/"), token)
    server = local_server(settings, store)
    token = token or review_server.local_token(server.data_dir)
    if not token:
        raise ReviewServerError(
            f"no local Label Studio for {store.root} yet: start one with `convoice review serve`"
        )
    return Connection(server.url, token, local=True)


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


def _redact(message: str, target: S3Audio) -> str:
    """``message`` without the credentials of ``target``."""
    for secret in target.credentials.values():
        message = message.replace(secret, "***")
    return message


def _s3_hint(message: str, target: S3Audio) -> str:
    """``message`` and what Label Studio needs to read the review audio."""
    where = target.endpoint or "its own $S3_ENDPOINT (or AWS)"
    return (
        f"{message} (Label Studio reads the review audio from S3 at {where} with the engine's"
        " AWS credentials; an endpoint on a private network is refused by its SSRF protection:"
        ' give Label Studio S3_ENDPOINT in its environment and set review.s3_endpoint = "env")'
    )


def _describe(err: Exception) -> tuple[bool, str]:
    """(worth retrying, what happened) for an exception of the SDK or httpx."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(err, httpx.TimeoutException):
        return True, f"timed out ({type(err).__name__})"
    if isinstance(err, httpx.TransportError):
        return True, f"unreachable ({type(err).__name__}: {err})"
    if isinstance(err, ApiError):
        status = err.status_code
        body = str(err.body)[:300]
        hint = " (check the API token)" if status in (401, 403) else ""
        return status is None or status >= 500 or status == 429, f"HTTP {status}{hint}: {body}"
    raise err


class ReviewClient:
    """The Label Studio calls Con Voice makes, each retried with backoff."""

    def __init__(
        self,
        conn: Connection,
        timeout_s: float = 30.0,
        retries: int = 4,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from label_studio_sdk import LabelStudio

        self.conn = conn
        self.url = conn.url
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.sdk = LabelStudio(base_url=conn.url, api_key=conn.token, timeout=timeout_s)

    def call(
        self, what: str, fn: Callable[..., T], *args: Any, retries: int | None = None, **kwargs: Any
    ) -> T:
        """``fn(*args, **kwargs)``, retried; ReviewServerError names ``what`` when it fails."""
        attempts = 1 + (self.retries if retries is None else retries)
        reason = ""
        for attempt in range(attempts):
            try:
                return fn(*args, request_options={"max_retries": 0}, **kwargs)
            except Exception as err:
                retry, reason = _describe(err)
                if not retry:
                    raise ReviewServerError(
                        f"Label Studio at {self.url} refused to {what}: {reason}"
                    ) from err
            if attempt + 1 < attempts:
                self.sleep(self.backoff_s * 2**attempt)
        hint = " (is it running? start it with `convoice review serve`)" if self.conn.local else ""
        raise ReviewServerError(
            f"Label Studio at {self.url} could not {what} after {attempts} attempts{hint}: {reason}"
        )

    def find_project(self, title: str) -> int | None:
        def find(request_options: Any) -> int | None:
            pager: Any = self.sdk.projects.list(title=title, request_options=request_options)
            for project in pager:
                if project.title == title and project.id is not None:
                    return int(project.id)
            return None

        return self.call(f"find project {title!r}", find)

    def ensure_project(self, title: str, label_config: str) -> int:
        """The id of the project ``title``, created (or its interface updated) as needed."""
        found = self.find_project(title)
        if found is None:
            project: Any = self.call(
                "create the review project",
                self.sdk.projects.create,
                title=title,
                label_config=label_config,
                sampling="Uncertainty sampling",
                show_collab_predictions=True,
                description="Con Voice clips the machine was unsure of, most uncertain first.",
            )
            return int(project.id)
        current = self.call("read the project", self.sdk.projects.get, found)
        if (current.label_config or "").strip() != label_config.strip():
            self.call(
                "update the labeling interface",
                self.sdk.projects.update,
                found,
                label_config=label_config,
            )
        return found

    def ensure_local_storage(self, project_id: int, path: str) -> None:
        """Local-files storage for the review audio (it lets the server serve those files)."""
        storages = self.call(
            "list storages", self.sdk.import_storage.local.list, project=project_id
        )
        if any((s.path or "").rstrip("/") == path.rstrip("/") for s in storages):
            return
        self.call(
            "connect the review audio folder",
            self.sdk.import_storage.local.create,
            project=project_id,
            path=path,
            use_blob_urls=False,
            title=STORAGE_TITLE,
        )

    def ensure_s3_storage(self, project_id: int, target: S3Audio) -> int:
        """The id of the project's S3 storage of ``target``: made once, then kept up to date.

        Never synced (Con Voice makes the tasks). Label Studio does not show the
        credentials it holds, so the engine's (when it has any) are sent on
        every call: rotated keys reach it, and keys it cannot use fail the push
        (Label Studio checks the bucket with them) instead of the audio.
        """
        storages = self.call(
            "list S3 storages", self.sdk.import_storage.s3.list, project=project_id
        )
        mine = [
            s
            for s in storages
            if s.bucket == target.bucket and (s.prefix or "").strip("/") == target.prefix
        ]
        wanted: dict[str, Any] = {**target.fields(), **target.credentials}
        try:
            if not mine:
                made: Any = self.call(
                    f"connect the review audio s3://{target.bucket}/{target.prefix}",
                    self.sdk.import_storage.s3.create,
                    project=project_id,
                    title=STORAGE_TITLE,
                    retries=0,  # a lost answer retried could make a second storage
                    **wanted,
                )
                return int(made.id)
            current = mine[0]
            if target.credentials or target.differs(current):
                self.call(
                    f"update the review audio storage {current.id}",
                    self.sdk.import_storage.s3.update,
                    current.id,
                    **wanted,
                )
            return int(current.id)
        except ReviewServerError as err:
            raise ReviewServerError(_s3_hint(_redact(str(err), target), target)) from None

    def existing_clip_ids(self, project_id: int) -> dict[str, int]:
        """clip_id -> task id of every task in the project."""

        def read(request_options: Any) -> dict[str, int]:
            pager: Any = self.sdk.tasks.list(
                project=project_id,
                include="id,data",
                page_size=PAGE_SIZE,
                request_options=request_options,
            )
            return {str((t.data or {}).get("clip_id")): int(t.id) for t in pager}

        return self.call("list the project's tasks", read)

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Import tasks once (no retry here: a retry must first check what arrived).

        Returns their ids (read back when the server imports asynchronously).
        """
        response: Any = self.call(
            "import tasks",
            self.sdk.projects.import_tasks,
            project_id,
            request=list(tasks),
            return_task_ids=True,
            retries=0,
        )
        ids = getattr(response, "task_ids", None)
        if ids is None:
            present = self.existing_clip_ids(project_id)
            return [present[t["data"]["clip_id"]] for t in tasks if t["data"]["clip_id"] in present]
        return [int(i) for i in ids]

    def set_model_version(self, project_id: int, version: str) -> None:
        """Show the predictions of ``version`` to annotators and sample by their scores."""
        self.call(
            "set the model version", self.sdk.projects.update, project_id, model_version=version
        )

    def annotated_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with at least one annotation, annotations included (as plain dicts)."""

        def read(request_options: Any) -> list[dict[str, Any]]:
            pager: Any = self.sdk.tasks.list(
                project=project_id,
                fields="all",
                only_annotated=True,
                page_size=PAGE_SIZE,
                request_options=request_options,
            )
            return [task for task in (t.dict() for t in pager) if task.get("annotations")]

        return self.call("read annotated tasks", read)

    def ensure_webhook(self, project_id: int, url: str) -> None:
        """Have Label Studio POST annotation events to ``url`` (older receivers removed)."""
        from convoice.review.webhook import ACTIONS

        hooks = self.call("list webhooks", self.sdk.webhooks.list, project=str(project_id))
        for hook in hooks:
            if "/convoice-review/" in (hook.url or "") and hook.url != url and hook.id is not None:
                self.call("remove an old webhook", self.sdk.webhooks.delete, hook.id)
        if not any(hook.url == url for hook in hooks):
            self.call(
                "register the webhook",
                self.sdk.webhooks.create,
                url=url,
                project=project_id,
                send_payload=False,
                actions=list(ACTIONS),
            )

    def users(self) -> dict[int, str]:
        """user id -> e-mail (empty when the token may not list users)."""
        try:
            return {int(u.id): str(u.email) for u in self.call("list users", self.sdk.users.list)}
        except ReviewServerError:
            return {}


def client_for(settings: Settings, store: Store) -> ReviewClient:
    """A client for the configured Label Studio (or the store's local one)."""
    cfg = settings.review
    return ReviewClient(connection(settings, store), cfg.timeout_s, cfg.retries)


def import_batch(
    client: ReviewClient, project_id: int, tasks: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Import ``tasks``, retrying only those that did not arrive (no duplicate on retry)."""
    pending = list(tasks)
    done: list[int] = []
    for attempt in range(client.retries + 1):
        try:
            return done + client.import_tasks(project_id, pending)
        except ReviewServerError:
            if attempt == client.retries:
                raise
        client.sleep(client.backoff_s * 2**attempt)
        present = client.existing_clip_ids(project_id)
        done += [present[t["data"]["clip_id"]] for t in pending if t["data"]["clip_id"] in present]
        pending = [t for t in pending if t["data"]["clip_id"] not in present]
        if not pending:
            return done
    return done


def write_context_audio(
    store: Store, row: Mapping[str, Any], recording: Mapping[str, Any], context_s: float
) -> tuple[str, float]:
    """``audio/review/<clip_id>.flac``: the clip ± ``context_s`` from the recording's FLAC.

    Returns its store key and where it starts in the recording. Written once:
    the recording and the clip bounds never change, so neither does the file.
    """
    import soundfile

    start, end = context_window(
        float(row["start"]), float(row["end"]), float(recording["duration"]), context_s
    )
    key = f"{REVIEW_AUDIO}/{row['clip_id']}.flac"
    if store.location.exists(key):
        return key, start
    rate = int(recording["sample_rate"])
    source = store.audio_path(recording["audio_uri"])
    first, last = round(start * rate), round(end * rate)
    if isinstance(source, Path):
        samples, rate = soundfile.read(source, start=first, stop=last, dtype="float32")
    else:
        import io

        whole, rate = soundfile.read(
            io.BytesIO(store.read_audio(recording["audio_uri"])), dtype="float32"
        )
        samples = whole[first:last]
    if len(samples) == 0:
        raise ValueError(f"clip {row['clip_id']}: no audio in the recording at {start:.2f} s")
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


def with_references(
    store: Store,
    options: Sequence[SpeakerOption],
    references: Mapping[str, Reference],
    urls: dict[str, str],
    s3: bool,
) -> list[SpeakerOption]:
    """``options`` with the URL of each speaker's reference clip (written on first use)."""
    out = []
    for option in options:
        ref = references.get(option.speaker_id)
        if ref is not None and option.speaker_id not in urls:
            urls[option.speaker_id] = audio_url(store, write_reference_audio(store, ref), s3)
        out.append(replace(option, reference=urls.get(option.speaker_id, "")))
    return out


def build_tasks(
    store: Store,
    rows: Sequence[Mapping[str, Any]],
    recordings: Mapping[str, Mapping[str, Any]],
    context_s: float,
    s3: bool = False,
    references: Mapping[str, Reference] | None = None,
) -> list[dict[str, Any]]:
    """The Label Studio tasks of ``rows`` (their context audio written first).

    ``s3``: the audio is named by its ``s3://`` URI (for the project's S3
    storage), else by its local-files URL. ``references``: per speaker, the
    clip to hear it by (:func:`convoice.review.layout.reference_clips`).
    """
    speakers = store.speakers()
    ids = [s.speaker_id for s in speakers]
    centroids = (
        np.stack([s.centroid for s in speakers]) if speakers else np.zeros((0, 0), dtype=np.float32)
    )
    names = {s.speaker_id: s.name for s in speakers}
    counts = {s.speaker_id: s.n_clips for s in speakers}
    tasks = []
    urls: dict[str, str] = {}
    for row in rows:
        recording = recordings[row["recording_id"]]
        key, context_start = write_context_audio(store, row, recording, context_s)
        vector = identity_vector(row, centroids.shape[1] if ids else None)  # the registry's
        embedding = np.asarray(vector, dtype=np.float32) if vector else None
        options = speaker_options(
            embedding, str(row.get("speaker_id") or ""), ids, centroids, names, counts
        )
        options = with_references(store, options, references or {}, urls, s3)
        url = audio_url(store, key, s3)
        tasks.append(
            task_payload(row, options, url, context_start, str(recording.get("title", "")))
        )
    return tasks
