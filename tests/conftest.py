"""Shared fixtures: an isolated Prefect, a small generated corpus served on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before Prefect is imported anywhere: its own home, no analytics, a patient server start.
_PREFECT_HOME = tempfile.mkdtemp(prefix="convoice-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# And before any model loads: the suite's own cache (ONNX graphs of the encoders tests
# train, the assembled Whisper, downloads), so tests never touch a user's
# ~/.cache/convoice. One per session: each model is exported once per run, not per test.
# CONVOICE_TEST_CACHE names one to keep between runs instead.
_KEEP_CACHE = bool(os.environ.get("CONVOICE_TEST_CACHE"))
_CACHE = os.environ.get("CONVOICE_TEST_CACHE") or tempfile.mkdtemp(prefix="convoice-test-cache-")
os.environ["CONVOICE_CACHE"] = _CACHE


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's Prefect home and cache (not one ``CONVOICE_TEST_CACHE`` names)."""
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
    if not _KEEP_CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API for the flows under test (flows run as real flow runs)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def tts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tts-cache")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path):  # type: ignore[no-untyped-def]
    """Three short two-speaker episodes; every voice talks in two of them."""
    from convoice.synth.samples import make_corpus

    out = tmp_path_factory.mktemp("small-corpus")
    return make_corpus(
        out,
        n_episodes=3,
        speakers_per_episode=(2, 2),
        turns_per_episode=6,
        seed=11,
        voices=["rms", "slt", "ked"],
        cache_dir=tts_cache,
    )


@pytest.fixture(scope="session")
def served_corpus(small_corpus) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The small corpus on a real HTTP server on 127.0.0.1; yields the base URL.

    On :data:`~convoice.synth.serve.TEST_PORT` (any free port when another session holds
    it): the URLs make the recording and clip ids, so on the fixed port every session's
    stores have the same ids, hence the same audit sample and judged share.
    """
    from convoice.synth.serve import TEST_PORT, serve_preferring

    with serve_preferring(small_corpus.root, TEST_PORT) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def librivox_clips():  # type: ignore[no-untyped-def]
    """The shipped LibriVox readings end to end (16 kHz float32), and each one's region."""
    import numpy as np

    from convoice.media.audio import decode
    from convoice.records import SAMPLE_RATE, Region
    from convoice.synth.recordings import librivox_samples

    pieces = [decode(path).samples for path, _ in librivox_samples()]
    clips, start = [], 0.0
    for piece in pieces:
        clips.append(Region(start, start + len(piece) / SAMPLE_RATE))
        start += len(piece) / SAMPLE_RATE
    return np.concatenate(pieces).astype(np.float32), clips
