"""Review of an s3:// store in a real Label Studio: the audio through an S3 storage.

The store is on the moto S3 server of ``tests/test_s3.py``; Label Studio is
the real one of ``tests/test_review.py``, started here without any AWS
variables (it gets the engine's credentials only through the storage) and with
``S3_ENDPOINT`` (for ``review.s3_endpoint = "env"``). Clips are committed
directly, as in ``tests/test_s3.py``: no ingest run. The local server lets
Label Studio reach 127.0.0.1 (``USE_DEFAULT_BANNED_SUBNETS=false``), so its
refusal of private endpoints sent through the API is not played here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from label_studio_sdk.core.api_error import ApiError
from test_s3 import BUCKET, KEYS, s3_endpoint  # noqa: F401 (a fixture)
from test_storage import SAMPLE_RATE, ingest, make_recording

from convoice.config import ConfigError, Settings, StoreSettings, load_settings
from convoice.review import audio as review_audio
from convoice.review import client as review
from convoice.review import server as review_server
from convoice.storage import Store
from convoice.storage.location import Location
from convoice.synth.serve import free_port

pytestmark = pytest.mark.slow  # a real Label Studio: half a minute to start

TITLE = "Con Voice review (s3 tests)"


# -- pure: no server ---------------------------------------------------------


def _store(root: str) -> Any:
    location = Location(root)
    return SimpleNamespace(root=location.root, location=location)


def test_an_s3_store_gets_an_s3_storage_of_its_review_folder() -> None:
    env = {**KEYS, "AWS_SESSION_TOKEN": "tok", "AWS_REGION": "eu-2"}
    store = _store("s3://bkt/some/prefix/")
    settings = Settings(store=StoreSettings(endpoint_url="http://minio:9000"))
    target = review_audio.s3_audio(settings, store, env)
    assert target is not None
    assert target.fields() == {
        "bucket": "bkt",
        "prefix": "some/prefix/audio/review",
        "s3endpoint": "http://minio:9000",
        "region_name": "eu-2",
        "presign": False,
        "use_blob_urls": True,
    }
    assert target.credentials == {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing-secret",
        "aws_session_token": "tok",
    }
    assert "testing-secret" not in repr(target) and "tok" not in repr(target)
    assert review_audio.audio_url(store, "audio/review/c 1.flac", True) == (
        "s3://bkt/some/prefix/audio/review/c 1.flac"
    )
    assert review_audio.audio_url(store, "audio/review/c 1.flac", False) == (
        "/data/local-files/?d=audio/review/c%201.flac"
    )

    own = load_settings(environ={"CONVOICE_REVIEW__S3_ENDPOINT": "env"}, home="s3://bkt")
    mine = review_audio.s3_audio(own, _store("s3://bkt"), {})
    assert mine is not None and (mine.prefix, mine.endpoint, mine.credentials) == (
        "audio/review",
        "",
        {},
    )
    other = load_settings(
        environ={"CONVOICE_REVIEW__S3_ENDPOINT": "https://s3.example.org"}, home="s3://bkt"
    )
    assert review_audio.s3_audio(other, _store("s3://bkt"), {}).endpoint == "https://s3.example.org"  # type: ignore[union-attr]
    # Local files as before: a local store, or a store Label Studio sees on its own disk.
    assert review_audio.s3_audio(Settings(), _store("/data/store"), env) is None
    mounted = load_settings(environ={"CONVOICE_REVIEW__DOCUMENT_ROOT": "/mnt/s"}, home="s3://b")
    assert review_audio.s3_audio(mounted, store, env) is None
    with pytest.raises(ConfigError, match="s3:// stores or local files"):
        review_audio.s3_audio(Settings(), _store("gs://bkt/p"), env)


def test_a_refused_storage_names_the_fix_and_never_the_secret() -> None:
    secret = KEYS["AWS_SECRET_ACCESS_KEY"]
    made: list[dict[str, Any]] = []

    def create(**kwargs: Any) -> None:
        made.append(kwargs)
        raise ApiError(status_code=503, body={"detail": f"busy with {secret}"})

    s3 = SimpleNamespace(list=lambda **_: [], create=create)
    conn = review.Connection("http://ls.invalid", "t")
    client = review.ReviewClient(conn, retries=3, sleep=lambda _s: None)
    client.sdk = SimpleNamespace(import_storage=SimpleNamespace(s3=s3))  # type: ignore[assignment]
    target = review_audio.S3Audio(
        "b", "p/audio/review", "http://10.0.0.5:9000", "", False, {"aws_secret_access_key": secret}
    )
    with pytest.raises(review.ReviewServerError) as err:
        client.ensure_s3_storage(1, target)
    message = str(err.value)
    assert "HTTP 503" in message and secret not in message and "***" in message
    assert 'review.s3_endpoint = "env"' in message and "http://10.0.0.5:9000" in message
    assert err.value.__cause__ is None  # the unredacted error stays out of tracebacks
    # Sent once: a create whose answer was lost, retried, could make a second storage.
    assert len(made) == 1 and made[0]["aws_secret_access_key"] == secret


# -- a real Label Studio and S3 ----------------------------------------------


@dataclass
class Server:
    url: str
    log: Path
    token: str = field(repr=False)


@pytest.fixture(scope="module")
def labelstudio(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Server]:  # noqa: F811
    """A real Label Studio on 127.0.0.1 with no AWS credentials and S3_ENDPOINT = moto."""
    home = tmp_path_factory.mktemp("review-s3-ls")
    program = review_server.ensure_venv()
    server = review_server.LocalServer(home / "labelstudio", home, free_port())
    with pytest.MonkeyPatch.context() as env:  # the server copies this environment once
        for name in (*KEYS, "AWS_SESSION_TOKEN"):
            env.delenv(name, raising=False)
        env.setenv("S3_ENDPOINT", s3_endpoint)
        proc, creds = review_server.start(server, program, timeout_s=600)
    assert proc is not None
    try:
        yield Server(server.url, server.log_path, creds.token)
    finally:
        review_server.stop_process(proc.pid)


def _s3_store(home: str, n_clips: int) -> Store:
    """Clips of one recording committed to the store, the recording's FLAC included."""
    store = Store.open(load_settings(home=home))
    rng = np.random.default_rng(5)
    recording = make_recording("rec_s3")
    seconds = 2 * n_clips + 2  # the clips are 2 s each from 0 s, plus 2 s of context
    samples = (0.1 * rng.standard_normal(seconds * SAMPLE_RATE)).astype(np.float32)
    store.write_flac(recording.audio_uri, samples, SAMPLE_RATE)
    ingest(store, "rec_s3", [f"spk_{i % 2}" for i in range(n_clips)], rng)
    return store


def _storages(sdk: Any, project_id: int) -> list[Any]:
    return list(sdk.import_storage.s3.list(project=project_id))


def _resolved_audio(server: Server, task_id: int) -> httpx.Response:
    """The task's audio as the labeling page asks for it (one hop, no redirect followed)."""
    auth = {"Authorization": f"Token {server.token}"}
    task = httpx.get(f"{server.url}/api/tasks/{task_id}/", headers=auth).json()
    url = task["data"]["audio"]
    assert url.startswith(f"{server.url}/tasks/{task_id}/resolve/?fileuri="), url
    assert httpx.get(url).status_code in (401, 403)  # not without a login
    return httpx.get(url, headers=auth)


def test_push_of_an_s3_store_serves_its_audio_through_one_s3_storage(
    prefect_harness: None,
    labelstudio: Server,
    s3_endpoint: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from label_studio_sdk import LabelStudio

    from convoice.flows.review import review_push_flow

    for name, value in {
        **KEYS,
        "CONVOICE_STORE__ENDPOINT_URL": s3_endpoint,
        "CONVOICE_STORE__REGION": "us-east-1",
        "CONVOICE_STORE__ALLOW_HTTP": "true",
        "CONVOICE_REVIEW__URL": labelstudio.url,
        "CONVOICE_REVIEW__TOKEN": labelstudio.token,
        "CONVOICE_REVIEW__PROJECT_TITLE": TITLE,
        "CONVOICE_REVIEW__AUDIT_SHARE": "0",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "CONVOICE_REVIEW__S3_ENDPOINT", "CONVOICE_REVIEW__PORT"):
        monkeypatch.delenv(name, raising=False)
    home = f"s3://{BUCKET}/review-store"
    store = _s3_store(home, n_clips=4)  # clips 1 and 3 need review

    first = review_push_flow(home=home)
    assert (first.pushed, first.remaining, first.error) == (2, 0, "")
    again = review_push_flow(home=home)
    assert (again.pushed, again.already_in_project) == (0, 2)

    sdk = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    project_id = first.project_id
    assert project_id is not None
    raw = sdk.tasks.list(project=project_id, fields="all", resolve_uri=False)
    tasks = sorted((t.dict() for t in raw), key=lambda t: t["id"])
    assert [t["data"]["clip_id"] for t in tasks] == ["rec_s3_c1", "rec_s3_c3"]  # no synced files
    for task in tasks:
        key = f"audio/review/{task['data']['clip_id']}.flac"
        assert task["data"]["audio"] == f"s3://{BUCKET}/review-store/{key}"
    (storage,) = _storages(sdk, project_id)  # one, after two pushes
    assert (storage.bucket, storage.prefix) == (BUCKET, "review-store/audio/review")
    assert (storage.s3endpoint, storage.presign, storage.use_blob_urls) == (
        s3_endpoint,
        False,
        True,
    )
    assert storage.last_sync is None  # never synced: Con Voice makes the tasks
    assert list(sdk.import_storage.local.list(project=project_id)) == []

    key = f"audio/review/{tasks[0]['data']['clip_id']}.flac"
    flac = store.location.read_bytes(key)
    assert flac[:4] == b"fLaC" and len(flac) > 1000
    streamed = _resolved_audio(labelstudio, tasks[0]["id"])  # Label Studio reads S3 itself
    assert streamed.status_code == 200 and streamed.content == flac

    monkeypatch.setenv("CONVOICE_REVIEW__S3_PRESIGN", "true")  # browsers fetch from S3
    assert review_push_flow(home=home).pushed == 0
    (presigning,) = _storages(sdk, project_id)
    assert (presigning.id, presigning.presign) == (storage.id, True)  # updated, not added
    redirect = _resolved_audio(labelstudio, tasks[0]["id"])
    assert redirect.status_code == 303
    location = redirect.headers["location"]
    assert location.startswith(f"{s3_endpoint}/{BUCKET}/review-store/{key}?")
    assert "X-Amz-Signature=" in location
    assert httpx.get(location).content == flac  # no credentials but the signature

    monkeypatch.setenv("CONVOICE_REVIEW__S3_PRESIGN", "false")
    monkeypatch.setenv("CONVOICE_REVIEW__S3_ENDPOINT", "env")  # Label Studio's own S3_ENDPOINT
    assert review_push_flow(home=home).pushed == 0
    (own,) = _storages(sdk, project_id)
    assert (own.id, own.s3endpoint or "", own.presign) == (storage.id, "", False)
    streamed = _resolved_audio(labelstudio, tasks[1]["id"])
    second_key = f"audio/review/{tasks[1]['data']['clip_id']}.flac"
    assert streamed.status_code == 200
    assert streamed.content == store.location.read_bytes(second_key)
    log = labelstudio.log.read_text(errors="replace")
    assert "/resolve/" in log and KEYS["AWS_SECRET_ACCESS_KEY"] not in log
