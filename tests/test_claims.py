"""Two ingests into one store at once: each recording is labelled by one of them, once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from convoice.config import load_settings
from convoice.flows.ingest import ingest_flow
from convoice.media import listing
from convoice.media.sources import read_sources
from convoice.orchestration.claims import Claims
from convoice.orchestration.prefetch import download_dir
from convoice.orchestration.store_lock import machine_lock
from convoice.storage import Store
from convoice.synth.serve import write_sources_csv


def test_a_recording_is_held_by_one_claimant_until_it_lets_go(tmp_path: Path) -> None:
    mine, theirs = Claims(tmp_path / "d"), Claims(tmp_path / "d")
    assert mine.claim("rec_a") and mine.claim("rec_a")  # held, and held again by its holder
    assert not theirs.claim("rec_a")
    assert theirs.claim("rec_b") and not mine.claim("rec_b")
    mine.release("rec_a")
    assert not (tmp_path / "d" / "rec_a.lock").exists()
    assert theirs.claim("rec_a") and theirs.held() == {"rec_a", "rec_b"}
    theirs.release_all()
    assert mine.claim("rec_b") and mine.held() == {"rec_b"}
    mine.release("rec_unknown")  # not held: nothing happens


def test_a_killed_holder_lets_go_of_its_recordings(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from pathlib import Path; "
            "from convoice.orchestration.claims import Claims; "
            f"c = Claims(Path({str(tmp_path)!r})); print(c.claim('rec_a'), flush=True); "
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert not Claims(tmp_path).claim("rec_a")
    finally:
        holder.kill()
        holder.wait()
    assert Claims(tmp_path).claim("rec_a")


@pytest.mark.usefixtures("prefect_harness")
def test_a_recording_another_ingest_holds_is_left_to_it_then_taken_up(  # type: ignore[no-untyped-def]
    tmp_path: Path, small_corpus, served_corpus
) -> None:
    home = str(tmp_path / "home")
    sources = write_sources_csv(small_corpus, served_corpus, tmp_path / "sources.csv")
    settings = load_settings(home=home)
    items = [
        i for s in read_sources(sources).sources for i in listing.expand_source(s, settings.ingest)
    ]
    held = items[1].recording_id
    downloads = download_dir(Store.open(settings).root)
    other = Claims(downloads)  # another ingest into this store
    assert other.claim(held)
    stale = {i.recording_id: downloads / f".{i.recording_id}.x1y2.part" for i in items[:2]}
    for path in stale.values():  # what a killed download leaves
        path.mkdir(parents=True)
    try:
        report = ingest_flow(sources_file=str(sources), home=home)
    finally:
        other.release(held)
    assert not stale[items[0].recording_id].exists()  # claimed by this run: cleaned
    assert stale[held].exists()  # the other run's: not touched
    assert report.elsewhere == 1 and report.exit_code == 0
    assert sorted(r.recording_id for r in report.recordings) == sorted(
        i.recording_id for i in items if i.recording_id != held
    )
    assert "1 being labelled by another run" in report.summary()
    assert held not in Store(home).done_recording_ids()
    again = ingest_flow(sources_file=str(sources), home=home)  # the holder let go: taken up
    assert [r.recording_id for r in again.recordings] == [held]
    assert again.already_done == 2 and again.elsewhere == 0
    assert not stale[held].exists()
    assert not list(downloads.glob("*.wav"))  # every download goes once its recording is in


@pytest.mark.usefixtures("prefect_harness")
def test_two_ingest_processes_at_once_label_each_recording_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, small_corpus, served_corpus
) -> None:
    home = tmp_path / "home"
    sources = write_sources_csv(small_corpus, served_corpus, tmp_path / "sources.csv")
    cmd = [sys.executable, "-m", "convoice.cli.root", "ingest", "--sources", str(sources),
           "--home", str(home)]  # fmt: skip
    outputs = [tmp_path / f"run{i}.log" for i in range(2)]
    runs = []
    for out in outputs:
        runs.append(subprocess.Popen(cmd, stdout=out.open("w"), stderr=subprocess.STDOUT))
        time.sleep(0.2)
    codes = [r.wait(timeout=900) for r in runs]
    logs = [out.read_text() for out in outputs]
    assert codes == [0, 0], logs
    assert not any("crashed" in log or "Traceback" in log for log in logs), logs
    store = Store(str(home))
    ids = store.clips()["clip_id"].to_pylist()
    assert len(ids) == len(set(ids)), "a clip written twice"
    assert len(store.done_recording_ids()) == 3
    # each recording labelled by one run; the other said it was done or left it to the first
    labelled = sum(int(log.split(" recordings labelled (")[0].rsplit("\n", 1)[-1].split()[-1])
                   for log in logs)  # fmt: skip
    assert labelled == 3, logs


def _waits_for_another_writer(
    store_root: str, write: Callable[[], object], seconds: float
) -> object:
    """Run ``write`` in a thread while another process holds the store's lock file: it must
    not finish within ``seconds``; once that process is killed it must. Its result."""
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import time; from convoice.orchestration.store_lock import machine_lock\n"
            f"with machine_lock({store_root!r}):\n    print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(write()))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        thread.start()
        thread.join(timeout=seconds)
        assert thread.is_alive(), "it wrote while another process held the store"
    finally:
        holder.kill()
        holder.wait()
    thread.join(timeout=120)
    assert not thread.is_alive() and len(result) == 1  # the killed holder let go
    return result[0]


def test_the_store_lock_is_one_writer_per_machine_and_reentrant_in_a_thread(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "store")
    with machine_lock(root), machine_lock(root):  # a pull inside a sync that holds it
        pass

    def write() -> str:
        with machine_lock(root):
            return "written"

    assert _waits_for_another_writer(root, write, 1.5) == "written"


@pytest.mark.usefixtures("prefect_harness")
def test_a_release_waits_for_a_writer_of_the_store(tmp_path: Path) -> None:
    from convoice.flows.release import release_flow

    home = str(tmp_path / "home")
    root = Store.open(load_settings(home=home)).root
    # then it runs: the store has no clips yet, so nothing is released
    assert _waits_for_another_writer(root, lambda: release_flow(home=home), 3.0) is None
