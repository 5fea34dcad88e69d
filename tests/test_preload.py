"""Models load once, in one thread, while Prefect starts and the sources expand."""

from __future__ import annotations

import threading

import pytest

from convoice.config import load_settings
from convoice.engines import loaders, onnx_runtime
from convoice.orchestration import preload


def test_one_loading_thread_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's thread is the one the flow joins; a later run may start another."""
    release = threading.Event()
    calls: list[str] = []

    def slow_load(settings: object) -> None:
        calls.append(threading.current_thread().name)
        release.wait(10)

    monkeypatch.setattr(loaders, "preload", slow_load)
    settings = load_settings(environ={})
    first = preload.start_preload(settings)
    with preload.preloading(settings):  # the flow, while the CLI's thread still loads
        assert preload.start_preload(settings) is first
        release.set()
    assert not first.is_alive() and calls == ["convoice-preload"]
    second = preload.start_preload(settings)
    second.join()
    assert second is not first and len(calls) == 2


def test_preload_loads_what_the_stages_use() -> None:
    loaders.preload(load_settings(environ={}))
    assert loaders.voice_encoder_net.cache_info().currsize >= 1
    assert loaders.segmenter.cache_info().currsize >= 1
    assert isinstance(loaders.campplus_encoder(), onnx_runtime.OnnxRunner)
    assert loaders.campplus_encoder.cache_info().hits >= 1  # loaded by preload, reused here


def test_the_command_line_imports_no_prefect_until_a_flow_runs() -> None:
    """`convoice --help` answers without importing Prefect (about 2 s of a 2-core machine)."""
    import subprocess
    import sys

    code = "import sys, convoice.cli.root; print(sorted(m for m in sys.modules if 'prefect' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout[:500]


def test_ingest_without_runner_options_starts_loading_models_before_prefect_imports() -> None:
    """`convoice ingest` with no runner option starts the loading thread before Prefect is imported.

    Prefect's import then runs beside the model loading, as ``ingest``'s comment says; checking
    the command's runner options must not import it first.
    """
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from convoice.cli.root import _runner_settings\n"
        "from convoice.config import load_settings\n"
        "assert _runner_settings(load_settings(environ={}).runner, None, None, None) is None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout[:500]


def test_the_loading_thread_compiles_yt_dlp_s_url_patterns_before_the_first_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first source expands without compiling yt-dlp's 1,800 extractors' URL patterns (about
    0.9 s): the loading thread has, each class keeping its compiled pattern."""
    from yt_dlp.extractor import gen_extractor_classes

    classes = [c for c in gen_extractor_classes() if c._VALID_URL is not False]
    for extractor in classes:  # as in a fresh process (another test may have matched URLs)
        if "_VALID_URL_RE" in extractor.__dict__:
            delattr(extractor, "_VALID_URL_RE")
    monkeypatch.setattr(loaders, "preload", lambda settings: None)
    preload.start_preload(load_settings(environ={})).join()
    missing = [c.__name__ for c in classes if "_VALID_URL_RE" not in c.__dict__]
    assert len(classes) > 1000 and not missing, missing[:5]
