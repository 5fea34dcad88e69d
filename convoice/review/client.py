"""The Label Studio client: where the server is, and every call retried with backoff.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from convoice.review import server as review_server
from convoice.review.audio import S3Audio

if TYPE_CHECKING:
    from convoice.config import Settings
    from convoice.storage import Store

T = TypeVar("T")
PAGE_SIZE = 500
STORAGE_TITLE = "Con Voice review audio"


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
        tries = f"{attempts} attempts" if attempts > 1 else "one attempt"
        raise ReviewServerError(
            f"Label Studio at {self.url} could not {what} after {tries}{hint}: {reason}"
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
