"""The threads runner's pipeline: the next recording is prepared while Whisper transcribes this one.

Real parts: the served sample corpus, the real models, real Prefect flow runs
and Delta tables. When stages ran comes from the flow's own stage records
(``IngestReport.timeline``), not from wall-clock thresholds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convoice.config import RunnerSettings
from convoice.flows.ingest import ingest_flow
from convoice.models.run_summary import IngestReport
from convoice.orchestration.pipeline import SLOTS, WhisperTurns
from convoice.storage import Store
from convoice.synth.serve import write_sources_csv

pytestmark = pytest.mark.usefixtures("prefect_harness")

RUN_COLUMNS = {"run_id", "created_at", "labelled_at"}  # when and by which run, not what


def _dataset(home: Path) -> dict[str, Any]:
    store = Store(str(home))
    clips = store.clips().sort_by("clip_id")
    columns = [c for c in clips.column_names if c not in RUN_COLUMNS]
    return {
        "clips": clips.select(columns).to_pylist(),  # every field, embeddings too
        "embeddings": np.stack(clips["embedding"].to_numpy(zero_copy_only=False)),
        "speakers": sorted((s.speaker_id, s.n_clips, s.n_recordings) for s in store.speakers()),
    }


def _span(report: IngestReport, rid: str, stage: str) -> tuple[float, float]:
    found = [(a, b) for r, s, a, b in report.timeline if r == rid and s == stage]
    assert len(found) == 1, (rid, stage, report.timeline)
    return found[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, small_corpus, served_corpus):  # type: ignore[no-untyped-def]
    """Three episodes labelled pipelined (the default) and one recording at a time."""
    home = tmp_path_factory.mktemp("pipeline")
    three = dataclasses.replace(small_corpus, episodes=small_corpus.episodes[:3])
    sources = write_sources_csv(three, served_corpus, home / "sources.csv")
    reports = {}
    for name, pipeline in (("pipelined", True), ("sequential", False)):
        reports[name] = ingest_flow(
            sources_file=str(sources),
            home=str(home / name),
            runner_settings=RunnerSettings(kind="threads", workers=1, pipeline=pipeline),
        )
    return home, reports


def test_the_next_recording_is_segmented_and_embedded_while_this_one_is_transcribed(runs) -> None:  # type: ignore[no-untyped-def]
    _, reports = runs
    piped, sequential = reports["pipelined"], reports["sequential"]
    order = [r.recording_id for r in piped.recordings]
    assert len(order) == 3 and not piped.skipped
    for this, following in itertools.pairwise(order):
        started, transcribed = _span(piped, this, "transcribe")
        segment_start, _ = _span(piped, following, "segment")
        embed_start, _ = _span(piped, following, "embed")
        assert segment_start < transcribed and embed_start < transcribed
        assert _span(piped, following, "transcribe")[0] >= started  # turns in item order
    spans = [_span(piped, rid, "transcribe") for rid in order]
    for start, _ in spans:  # never more transcriptions at once than Whisper has slots
        assert sum(a <= start < b for a, b in spans) <= SLOTS
    for this, following in itertools.pairwise(order):  # the sequential path: no overlap
        ended = _span(sequential, this, "transcribe")[1]
        assert _span(sequential, following, "segment")[0] >= ended


def test_the_pipelined_dataset_is_the_sequential_one_field_by_field(runs) -> None:  # type: ignore[no-untyped-def]
    home, _ = runs
    a, b = _dataset(home / "pipelined"), _dataset(home / "sequential")
    assert len(a["clips"]) >= 8
    assert a["clips"] == b["clips"]  # ids, times, speakers, texts, statuses, reasons, audio
    assert a["speakers"] == b["speakers"]
    np.testing.assert_array_equal(a["embeddings"], b["embeddings"])  # bit for bit


def test_whisper_turns_follow_the_queue_and_a_failed_recording_passes_its_turn_on() -> None:
    import threading

    turns = WhisperTurns(slots=1)
    for rid in ("a", "b", "c"):
        turns.queue(rid)
    ran: list[str] = []

    def transcribe(rid: str) -> None:
        with turns.turn(rid):
            ran.append(rid)

    threads = [threading.Thread(target=transcribe, args=(r,)) for r in ("c", "b")]
    for t in threads:
        t.start()
    turns.leave("a")  # "a" failed before its transcription
    for t in threads:
        t.join(timeout=30)
    assert ran == ["b", "c"]
    with turns.turn("never-queued"):  # Dask workers, pipeline off: no wait
        ran.append("x")
    assert ran == ["b", "c", "x"]


def test_the_next_recording_prepares_once_the_one_before_it_is_transcribing() -> None:
    import threading

    turns = WhisperTurns(slots=1)
    for rid in ("a", "b", "c"):
        turns.queue(rid)
    events: list[str] = []
    a_transcribing, a_may_end = threading.Event(), threading.Event()

    def prepare(rid: str) -> None:
        turns.prepare_after(rid)
        events.append(f"{rid} prepares")
        with turns.turn(rid):
            events.append(f"{rid} transcribes")
            if rid == "a":
                a_transcribing.set()
                a_may_end.wait(timeout=30)

    turns.prepare_after("a")  # the first one never waits
    b = threading.Thread(target=prepare, args=("b",))
    b.start()
    b.join(timeout=0.5)
    assert b.is_alive() and events == []  # "a" has not reached Whisper: "b" waits
    a = threading.Thread(target=prepare, args=("a",))
    a.start()
    assert a_transcribing.wait(timeout=30)
    c = threading.Thread(target=prepare, args=("c",))
    c.start()
    c.join(timeout=0.5)
    assert c.is_alive()  # "b" is not transcribing yet: "c" waits
    a_may_end.set()
    for t in (a, b, c):
        t.join(timeout=30)
    assert [e for e in events if e.endswith("transcribes")] == [
        "a transcribes", "b transcribes", "c transcribes"
    ]  # fmt: skip
    assert events.index("b prepares") > events.index("a prepares")
    assert events.index("c prepares") > events.index("b prepares")
    turns.prepare_after("never-queued")  # Dask workers, pipeline off: no wait


def test_two_recordings_transcribe_side_by_side_and_the_third_waits_for_a_slot() -> None:
    import threading

    turns = WhisperTurns(slots=2)
    for rid in ("a", "b", "c"):
        turns.queue(rid)
    inside: set[str] = set()
    both, may_end = threading.Barrier(3, timeout=30), threading.Event()
    seen: list[set[str]] = []

    def transcribe(rid: str) -> None:
        turns.prepare_after(rid)
        with turns.turn(rid):
            inside.add(rid)
            seen.append(set(inside))
            if rid in "ab":
                both.wait()  # "a" and "b" are in Whisper at the same time
                may_end.wait(timeout=30)
            inside.discard(rid)

    threads = {r: threading.Thread(target=transcribe, args=(r,)) for r in "abc"}
    for t in threads.values():
        t.start()
    both.wait()
    threads["c"].join(timeout=0.5)
    assert threads["c"].is_alive() and "c" not in inside  # no third slot
    may_end.set()
    for t in threads.values():
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads.values())
    assert {"a", "b"} in seen and all(len(s) <= 2 for s in seen)
    with pytest.raises(ValueError, match="slots"):
        WhisperTurns(slots=0)


def test_a_long_recording_is_transcribed_alone() -> None:
    """A recording of more than an hour of clips holds both slots (memory), in item order."""
    import threading

    turns = WhisperTurns(slots=2)
    for rid in ("long", "short", "late"):
        turns.queue(rid)
    inside: set[str] = set()
    seen: list[set[str]] = []
    long_in, long_may_end = threading.Event(), threading.Event()

    def transcribe(rid: str, alone: bool) -> None:
        with turns.turn(rid, alone):
            inside.add(rid)
            seen.append(set(inside))
            if rid == "long":
                long_in.set()
                long_may_end.wait(timeout=30)
            inside.discard(rid)

    first = threading.Thread(target=transcribe, args=("long", True))
    first.start()
    assert long_in.wait(timeout=30)
    others = [threading.Thread(target=transcribe, args=(r, r == "late")) for r in ("short", "late")]
    for t in others:
        t.start()
    others[0].join(timeout=0.5)
    assert others[0].is_alive() and inside == {"long"}  # a free slot, but "long" is alone
    long_may_end.set()
    for t in (first, *others):
        t.join(timeout=30)
    assert seen[0] == {"long"} and {"short", "late"} not in seen  # "late" was alone too


def test_the_first_planned_recordings_download_at_once_each_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, small_corpus, served_corpus
) -> None:
    from convoice.config import load_settings
    from convoice.flows.ingest_pipeline import first_downloads
    from convoice.media import listing
    from convoice.media.sources import read_sources
    from convoice.orchestration import prefetch
    from convoice.orchestration.run import IngestRun

    settings = load_settings(home=str(tmp_path / "home"))
    run = IngestRun(Store.open(settings), settings, "run", IngestReport(run_id="run", home=""))
    sources = read_sources(write_sources_csv(small_corpus, served_corpus, tmp_path / "s.csv"))
    items = [i for s in sources.sources for i in listing.expand_source(s, settings.ingest)]
    assert len(items) == 3
    prefetcher = prefetch.Prefetcher()
    planned = first_downloads(prefetcher, run)
    for item in [*items, items[0]]:  # as the plan keeps them (one listed twice)
        planned(item)
    # threads, pipelined: as many as the flow submits at once start downloading
    assert prefetcher.started == {i.recording_id for i in items[:3]}
    # the flow submits it: no twice
    prefetcher.start(items[0], prefetch.download_dir(run.store.root), settings)
    first = prefetch.take_prefetched(items[0].recording_id)
    assert first is not None and first.result().exists()
    from convoice.media.download import remove_download

    remove_download(first.result())
    assert prefetch.take_prefetched(items[0].recording_id) is None  # taken once
    prefetcher.close([])
    assert all(prefetch.take_prefetched(i.recording_id) is None for i in items)  # forgotten


@contextlib.contextmanager
def _media_server(count: int, root: Path, delay: float = 0.0) -> Iterator[tuple[list[str], Any]]:
    """``count`` one-second WAVs served over real HTTP, each request answered after ``delay``
    s; yields their URLs and the server's tally (``most``: requests at once, ``asked``: per
    path)."""
    import threading
    import time
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    import soundfile as sf

    root.mkdir()
    for i in range(count):
        sf.write(root / f"m{i}.wav", np.zeros(16000, np.float32), 16000)
    lock = threading.Lock()
    tally = SimpleNamespace(now=0, most=0, asked={})

    class Slow(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """No per-request lines."""

        def _slowly(self, serve: Any) -> None:
            with lock:
                tally.now += 1
                tally.most = max(tally.most, tally.now)
                tally.asked[self.path] = tally.asked.get(self.path, 0) + 1
            try:
                time.sleep(delay)  # a platform that takes its time to answer
                serve()
            finally:
                with lock:
                    tally.now -= 1

        def do_GET(self) -> None:
            self._slowly(super().do_GET)

        def do_HEAD(self) -> None:
            self._slowly(super().do_HEAD)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Slow, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield [f"{base}/m{i}.wav" for i in range(count)], tally
    finally:
        server.shutdown()
        server.server_close()


def _plain_run(tmp_path: Path) -> Any:
    from convoice.config import load_settings
    from convoice.orchestration.run import IngestRun

    settings = load_settings(home=str(tmp_path / "home"))
    return IngestRun(Store.open(settings), settings, "run", IngestReport(run_id="run", home=""))


def test_sources_expand_a_few_at_a_time_in_their_order_each_url_once(tmp_path: Path) -> None:
    """The plan lists up to EXPAND_AHEAD sources at once (a real server that answers slowly
    counts the requests in flight), hands them on in the sources' order, and asks for a
    URL listed twice once."""
    from prefect import flow

    from convoice.flows.ingest_run import EXPAND_AHEAD, expansions
    from convoice.records import Source

    run = _plain_run(tmp_path)
    with _media_server(6, tmp_path / "media", delay=0.3) as (urls, tally):
        found = [Source(u, "CC-BY-4.0") for u in [*urls[:3], urls[0], *urls[3:]]]

        @flow
        def expand_all() -> list[tuple[str, list[str]]]:
            return [(s.url, [e.url for e in entries]) for s, entries in expansions(found, run)]

        out = expand_all()
    assert [url for url, _ in out] == [s.url for s in found]  # the sources' order
    assert [entries for _, entries in out] == [[s.url] for s in found]  # each its own item
    assert 2 <= tally.most <= EXPAND_AHEAD  # several at once, never more than allowed
    assert tally.asked["/m0.wav"] == tally.asked["/m1.wav"]  # listed twice, asked for once


def test_the_plan_lists_later_sources_only_as_labelling_asks(tmp_path: Path) -> None:
    """The flow's plan is lazy: the first item listed asks no more sources of the server than
    the few expanding ahead; the rest come, in order, once each, as they are asked for."""
    from prefect import flow

    from convoice.flows.ingest_run import EXPAND_AHEAD, Planned, plan
    from convoice.records import Source

    run = _plain_run(tmp_path)
    count = EXPAND_AHEAD + 4
    with _media_server(count, tmp_path / "media") as (urls, tally):
        found = [Source(u, "CC-BY-4.0") for u in [*urls, urls[1]]]

        @flow
        def listing() -> tuple[int, list[str], list[str]]:
            planned = Planned(plan(found, run))
            planned.ahead(1)
            early = len(tally.asked)
            return early, [i.url for i in planned], [i.url for i in planned]

        early, first_pass, again = listing()
    assert 1 <= early <= EXPAND_AHEAD < count  # not every source before labelling
    assert first_pass == again == urls  # in order, the repeat left out, the same each time
    assert len(tally.asked) == count
    assert run.report.already_done == 1  # the repeat, counted as done once, as before


def test_progress_rows_grow_as_a_lazy_plan_lists_items() -> None:
    """The live display gets a row per recording as it is listed, the overall count grows
    with them, and a recording listed again is not a second row."""
    import logging

    from convoice.logs import Progress

    with Progress(logging.getLogger("test-progress"), live=True) as progress:
        progress.plan([("a", "first")], ["segment", "embed"])
        progress.plan([("b", "second"), ("a", "first")], ["segment", "embed"])
        progress.finish("a", "done")
        progress.plan([("c", "third")], ["segment", "embed"])
        rows, overall = len(progress._rows), progress._progress.tasks[progress._overall]
    assert rows == 3
    assert (overall.total, overall.completed) == (3, 1)
