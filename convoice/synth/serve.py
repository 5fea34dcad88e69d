"""Serve a corpus over HTTP on 127.0.0.1, and the sources file that lists its media there."""

from __future__ import annotations

import contextlib
import csv
import functools
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from convoice.orchestration.server import free_port as free_port  # the one helper

if TYPE_CHECKING:
    from convoice.synth.samples import Corpus


def write_sources_csv(
    corpus: Corpus, base_url: str, path: str | Path, license: str = "CC-BY-4.0"
) -> Path:
    """Write ``url,license,note`` rows (with that header) for the corpus media under ``base_url``.

    ``base_url`` is where :attr:`Corpus.root` is served, e.g. by :func:`serve_directory`.
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "license", "note"])
        for ep in corpus.episodes:
            rel = ep.media_path.relative_to(corpus.root).as_posix()
            note = f"sample episode {ep.episode_id}: {', '.join(ep.speakers)}"
            writer.writerow([base + quote(rel), license, note])
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up early (yt-dlp probing a file) is worth no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_directory(path: str | Path, port: int = 0) -> Iterator[str]:
    """Serve ``path`` over HTTP on 127.0.0.1 while the context lasts; yields the base URL.

    ``port``: 0 for any free port; a fixed one raises OSError when it is taken.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _QuietServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="convoice-serve", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Benchmarks serve their episodes from this port on 127.0.0.1. Their URLs make their recording
# ids, hence their clip ids, hence the review's audit sample (a hash of the clip id): on a random
# port a different few accepted clips were pushed and corrected on each run, and every figure
# after them moved.
BENCH_PORT = 41515
# The test suite's small corpus, for the same reason: on a random port the judged share of
# people's labels (a hash of the clip id) of tests/test_encoder.py's store was another one each
# session, and about one session in 175 left a round nothing to train on.
TEST_PORT = 41516
# `convoice demo` serves its videos from this port: their URLs make their recording ids, and on
# a random port a second demo into the same store ingested the same four videos again under
# new ids (session 41: v2 held 120 clips, each one twice).
DEMO_PORT = 41514


def on_port(base_url: str, port: int) -> bool:
    """Whether ``base_url`` (of :func:`serve_preferring`) is served on ``port``."""
    return base_url.endswith(f":{port}/")


def served_note(base_url: str) -> str:
    """``served on URL``, with a warning when it is not :data:`BENCH_PORT`."""
    if on_port(base_url, BENCH_PORT):
        return f"served on {base_url}"
    return (
        f"served on {base_url} (NOT port {BENCH_PORT}: other clip ids, another audit sample;"
        " figures not comparable)"
    )


@contextlib.contextmanager
def serve_preferring(path: str | Path, port: int) -> Iterator[str]:
    """:func:`serve_directory` on ``port``, or on any free port when it is taken.

    A benchmark whose media ids are its URLs serves on a fixed port so that its ids are the
    same from run to run; the caller compares the yielded URL with ``port`` to say when not.
    """
    with contextlib.ExitStack() as stack:
        try:
            base_url = stack.enter_context(serve_directory(path, port))
        except OSError:
            base_url = stack.enter_context(serve_directory(path))
        yield base_url
