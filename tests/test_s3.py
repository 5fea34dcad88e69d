"""The store on S3-compatible object storage: a local moto server on 127.0.0.1.

moto runs as its own process: deltalake's S3 client blocks while holding the
GIL, so an in-process (threaded) moto server would never answer it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import soundfile
from test_storage import ingest

from convoice.config import Settings, StoreSettings, load_settings
from convoice.storage import Store
from convoice.storage.location import s3_filesystem, storage_options
from convoice.synth.serve import free_port

BUCKET = "convoice-test"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with one empty bucket; yields its URL."""
    program = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if program is None:
        pytest.skip("moto[server] is not installed (pip install -e '.[dev]')")
    port = free_port()
    proc = subprocess.Popen(
        [program, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {url}") from None
                time.sleep(0.2)
        pafs.S3FileSystem(
            access_key=KEYS["AWS_ACCESS_KEY_ID"],
            secret_key=KEYS["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=url.removeprefix("http://"),
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        ).create_dir(BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_settings(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Settings for a fresh prefix in the bucket, credentials in the AWS variables."""
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("CONVOICE_STORE__ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("CONVOICE_STORE__REGION", "us-east-1")
    monkeypatch.setenv("CONVOICE_STORE__ALLOW_HTTP", "true")
    return load_settings(home=f"s3://{BUCKET}/{request.node.name}")


def test_storage_options_from_settings() -> None:
    settings = StoreSettings(endpoint_url="http://127.0.0.1:9000", region="eu-1", allow_http=True)
    env = {**KEYS, "AWS_SESSION_TOKEN": "", "HOME": "/root"}
    assert storage_options("s3://b/p", settings, env) == {
        **KEYS,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-1",
        "AWS_ALLOW_HTTP": "true",
    }
    assert storage_options("/data/store", settings, env) == {}
    assert storage_options("s3://b/p", StoreSettings(), KEYS) == {}  # the AWS defaults
    with pytest.raises(ValueError, match="AWS_ALLOW_HTTP"):
        s3_filesystem({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    fs = s3_filesystem({"aws_endpoint_url": "https://s3.example.org", "aws_region": "eu-1"})
    assert fs.region == "eu-1"
    # Where the store lives does not shape labels: it stays out of the recorded settings.
    assert "store" not in Settings().model_settings()


def test_commit_release_pull_on_s3(s3_settings: Settings, tmp_path: Path) -> None:
    store = Store.open(s3_settings)
    assert store.root.startswith(f"s3://{BUCKET}/")
    assert store.location.storage_options["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    rng = np.random.default_rng(3)
    clips = ingest(store, "rec_a", ["spk_1", "spk_2"], rng)
    ingest(store, "rec_b", ["spk_1", "spk_3"], rng)  # an upsert (MERGE) of the registry
    assert store.done_recording_ids() == {"rec_a", "rec_b"}
    assert {s.speaker_id: s.n_recordings for s in store.speakers()} == {
        "spk_1": 2,
        "spk_2": 1,
        "spk_3": 1,
    }
    assert store.clips(version=0).num_rows == 2  # time travel on S3

    first = store.release(tag="first", note="on s3")
    store.add_labels(
        [{"clip_id": clips[1].clip_id, "field": "status", "value": "rejected", "labelled_by": "a"}]
    )
    second = store.release()
    assert [r.name for r in store.releases()] == ["v1", "v2"]
    assert first.path == f"{store.root}/releases/v1"
    assert first.n_clips == 4 and first.clips_by_status == {"accepted": 2, "review": 2}
    assert second.clips_by_status == {"accepted": 2, "rejected": 1, "review": 1}

    pulled = store.pull("first", tmp_path / "first")
    assert (pulled.n_clips, pulled.copied) == (4, 5 + 4 + 1)  # 5 parquet, 4 FLAC, manifest
    table = pq.read_table(tmp_path / "first" / "clips.parquet")
    assert table.num_rows == 4
    assert sorted(table["status"].to_pylist()) == ["accepted", "accepted", "review", "review"]
    for path in table["audio_path"].to_pylist():
        samples, rate = soundfile.read(tmp_path / "first" / path)
        assert rate == 16_000 and len(samples) == 32_000
    assert "Talk rec_a" in (tmp_path / "first" / "ATTRIBUTION.md").read_text()
    again = store.pull("v1", tmp_path / "first")
    assert again.copied == 0

    # A second process with the same settings sees the same store.
    reopened = Store.open(s3_settings)
    assert [r.tag for r in reopened.releases()] == ["first", None]
    assert reopened.read_audio(clips[0].audio_uri)[:4] == b"fLaC"
