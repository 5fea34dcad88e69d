"""The ingest flow as a real Prefect flow run: real yt-dlp, models, Delta tables, ffmpeg."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from convoice.flows.ingest import ingest_flow, run_ingest
from convoice.models.clustering import b_cubed
from convoice.models.evaluation import clip_truth
from convoice.models.run_summary import IngestReport
from convoice.orchestration.prefetch import download_dir
from convoice.storage import Store
from convoice.synth import samples
from convoice.synth.media_files import make_music, make_silence, make_truncated
from convoice.synth.serve import write_sources_csv

pytestmark = pytest.mark.usefixtures("prefect_harness")


def write_sources(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A sources CSV (url, license) of ``rows``; other test modules use it too."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "license"])
        writer.writerows(rows)
    return path


def _corpus_sources(corpus: samples.Corpus, base_url: str, path: Path) -> Path:
    return write_sources_csv(corpus, base_url, path)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, small_corpus, served_corpus):  # type: ignore[no-untyped-def]
    """The small corpus ingested once into a fresh store (registry consolidation on)."""
    home = tmp_path_factory.mktemp("home")
    (home / "config.toml").write_text("[consolidation]\nenabled = true\n")  # the default, stated
    sources = _corpus_sources(small_corpus, served_corpus, home / "sources.csv")
    report = ingest_flow(sources_file=str(sources), home=str(home))
    return home, report


def test_flow_labels_every_episode_with_identities_across_them(labelled, small_corpus) -> None:  # type: ignore[no-untyped-def]
    home, report = labelled
    store = Store(str(home))
    assert len(report.recordings) == 3 and not report.skipped
    clips = store.clips().to_pylist()
    assert len(clips) >= 12
    by_url = {r["recording_id"]: r for r in store.recordings().to_pylist()}
    episodes = {ep.media_path.name: ep for ep in small_corpus.episodes}
    truth, predicted = [], []
    for clip in clips:
        episode = episodes[by_url[clip["recording_id"]]["url"].rsplit("/", 1)[-1]]
        speaker, purity = clip_truth(clip, episode.turns)  # type: ignore[arg-type]
        assert purity > 0.8, clip  # single-speaker clips
        truth.append(speaker)
        predicted.append(clip["speaker_id"])
        assert 1.0 <= clip["duration"] <= 8.2
        assert (
            clip["speaker_label_source"] == "machine" and clip["models"] and clip["settings_hash"]
        )
        assert clip["status"] in {"accepted", "review"}
        assert clip["status"] == "accepted" or clip["review_reasons"]
        assert Path(store.audio_path(clip["audio_uri"])).is_file()
    _, _, f1 = b_cubed(truth, predicted)
    assert f1 >= 0.9, f"cross-episode speaker clustering B-cubed F1 {f1:.3f}"
    assert len(store.speakers()) == 3
    assert "consolidate" in report.stage_seconds  # the registry was re-checked as a whole
    for rec in by_url.values():  # CC-BY requires attribution: every recording keeps it
        assert rec["license"] == "CC-BY-4.0" and "CC BY 4.0" in rec["attribution"]


def test_clips_keep_the_d_vector_and_carry_the_identity_embedding(labelled) -> None:  # type: ignore[no-untyped-def]
    """resemblyzer's 256 floats stay (the TTS export); CAM++'s 192 identify, named in ``models``:
    a new store starts on the tuned CAM++ that ships, and records it as its current one."""
    import json

    from convoice.engines import loaders
    from convoice.storage.encoders import SHIPPED_CAMPPLUS, EncoderRegistry

    home, _ = labelled
    store = Store(str(home))
    for clip in store.clips().to_pylist():
        assert len(clip["embedding"]) == 256 and len(clip["speaker_embedding"]) == 192
        models = json.loads(clip["models"])
        assert models["embedding"] == loaders.EMBEDDING_NAME
        assert models["speaker_embedding"] == SHIPPED_CAMPPLUS
        assert models["identity"] == "campplus"
    assert {len(s.vector_sum) for s in store.speakers()} == {192}  # the registry is CAM++'s
    registry = EncoderRegistry(store.location)
    assert registry.current("campplus") == SHIPPED_CAMPPLUS and registry.history("campplus") == []


def test_each_label_kind_is_routed_released_and_pulled_on_its_own(labelled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Ingest -> release -> ``dataset pull --speaker sure``: per-kind statuses all the way."""
    from typer.testing import CliRunner

    from convoice.cli.root import app
    from convoice.storage.calibration import shipped
    from convoice.training.calibrate import stored_evidence, stored_kind

    home, _ = labelled
    clips = Store(str(home)).clips().to_pylist()
    calibration = shipped()
    for c in clips:
        assert c["calibration_version"] == calibration.version
        assert 0.0 <= c["speaker_confidence"] <= 1.0 and 0.0 <= c["transcript_confidence"] <= 1.0
        raw = c["speaker_score_raw"]
        evidence = stored_evidence(c["extra"], raw, c["duration"])  # under the bar: the model's
        assert c["speaker_confidence"] == pytest.approx(
            calibration.speaker_probability(raw, stored_kind(c["extra"]), evidence), abs=2e-3
        )
        assert c["speaker_status"] in {"accepted", "review"}
        assert c["transcript_status"] in {"accepted", "review"}
        both = c["speaker_status"] == c["transcript_status"] == "accepted"
        assert (c["status"] == "accepted") == both
    sure = {c["clip_id"] for c in clips if c["speaker_status"] == "accepted"}
    assert sure, "no speaker label of the seven tuning voices was sure"
    release = Store(str(home)).release(note="kinds")
    out = tmp_path / "speakers"
    result = CliRunner().invoke(
        app, ["dataset", "pull", release.name, "--to", str(out), "--speaker", "sure",
              "--home", str(home)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(pq.read_table(out / "clips.parquet")["clip_id"].to_pylist()) == sure
    bad = CliRunner().invoke(
        app, ["dataset", "pull", release.name, "--to", str(out), "--speaker", "maybe",
              "--home", str(home)],
    )  # fmt: skip
    assert bad.exit_code == 2 and "--speaker maybe" in bad.output


def test_the_run_leaves_a_summary_artifact_for_operators(labelled) -> None:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, report = labelled
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-report"]))
        )
    assert any(report.run_id in str(a.data) and "Time per stage" in str(a.data) for a in found)


def test_second_run_downloads_and_writes_nothing(labelled, small_corpus, served_corpus) -> None:  # type: ignore[no-untyped-def]
    home, _ = labelled
    before = Store(str(home)).clips().num_rows
    sources = _corpus_sources(small_corpus, served_corpus, home / "again.csv")
    report = ingest_flow(sources_file=str(sources), home=str(home))
    assert report.already_done == 3 and not report.recordings
    assert Store(str(home)).clips().num_rows == before


def test_every_bad_item_fails_alone_with_a_reason(
    tmp_path: Path, small_corpus, served_corpus
) -> None:  # type: ignore[no-untyped-def]
    media = small_corpus.root
    make_truncated(small_corpus.episodes[1].media_path, media / "truncated.mp4")
    make_silence(media / "silence.mp4", 6.0)
    make_music(media / "music.mp4", 8.0)
    good = served_corpus + small_corpus.episodes[0].media_path.name
    sources = write_sources(
        tmp_path / "bad.csv",
        [
            (served_corpus + "truncated.mp4", "CC-BY-4.0"),
            (served_corpus + "silence.mp4", "CC-BY-4.0"),
            (served_corpus + "music.mp4", "CC0-1.0"),
            (good.replace(".mp4", "-missing.mp4"), "CC-BY-4.0"),
            ("http://127.0.0.1:9/nothing-listens-here.mp4", "CC-BY-4.0"),
            ("notaurl://x", "CC-BY-4.0"),
            (served_corpus + small_corpus.episodes[2].media_path.name, ""),  # no licence
            (good, "CC-BY-4.0"),
        ],
    )
    report = ingest_flow(sources_file=str(sources), home=str(tmp_path / "home"))
    assert [r.title for r in report.recordings] == [small_corpus.episodes[0].media_path.stem]
    reasons = {s.url.rsplit("/", 1)[-1] or s.source_url: s.reason_code for s in report.skipped}
    assert reasons["truncated.mp4"] == "corrupt_media"
    assert reasons["silence.mp4"] == "no_speech"
    assert reasons["music.mp4"] in {"no_speech"}
    assert reasons[small_corpus.episodes[2].media_path.name] == "not_creative_commons"
    assert sorted(reasons.values()).count("unreachable") == 2
    assert "unsupported_url" in reasons.values()
    store = Store(str(tmp_path / "home"))
    assert store.done_recording_ids() == {report.recordings[0].recording_id}
    assert set(store.clips()["recording_id"].to_pylist()) == {report.recordings[0].recording_id}
    assert len(store.skipped()) == 7  # every skip is recorded with its reason
    # silence and music were downloaded, then skipped: their downloads go too
    assert not list(download_dir(store.root).glob("*.wav"))


def test_killed_run_resumes_without_duplicates(
    tmp_path: Path, labelled, small_corpus, served_corpus
) -> None:  # type: ignore[no-untyped-def]
    sources = _corpus_sources(small_corpus, served_corpus, tmp_path / "sources.csv")
    home = tmp_path / "home"
    cmd = [
        sys.executable,
        "-m",
        "convoice.cli.root",
        "ingest",
        "--sources",
        str(sources),
        "--home",
        str(home),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    store = Store(str(home))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if (home / "tables" / "recordings").exists() and len(store.done_recording_ids()) >= 1:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: at least one recording done, others not
    proc.wait()
    done_before = len(store.done_recording_ids())
    assert 1 <= done_before < 3, "the run was not killed mid-way"
    report = ingest_flow(sources_file=str(sources), home=str(home))
    assert report.already_done == done_before
    clips = store.clips()
    ids = clips["clip_id"].to_pylist()
    assert len(ids) == len(set(ids)), "duplicate clips after resuming"
    reference = Store(str(labelled[0])).clips()
    assert sorted(ids) == sorted(reference["clip_id"].to_pylist())  # same as a clean run
    assert len(store.speakers()) == 3


def test_release_pull_and_load_like_a_trainer(labelled, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from convoice.cli.root import app

    home, _ = labelled
    runner = CliRunner()
    out = runner.invoke(app, ["dataset", "release", "--tag", "first", "--home", str(home)])
    assert out.exit_code == 0, out.output
    again = runner.invoke(app, ["dataset", "release", "--tag", "first", "--home", str(home)])
    assert again.exit_code == 2 and "first" in again.output  # a used tag: a message, no traceback
    listing = runner.invoke(app, ["dataset", "list", "--home", str(home)])
    assert "first" in listing.output and "v1" in listing.output
    dest = tmp_path / "ds"
    pulled = runner.invoke(
        app, ["dataset", "pull", "first", "--to", str(dest), "--home", str(home)]
    )
    assert pulled.exit_code == 0, pulled.output
    for name in ("clips.parquet", "speakers.parquet", "recordings.parquet", "ATTRIBUTION.md"):
        assert (dest / name).is_file()
    import datasets
    import pandas as pd

    df = pd.read_parquet(dest / "clips.parquet")
    assert len(df) == Store(str(home)).clips().num_rows
    assert all((dest / p).is_file() for p in df["audio_path"])
    assert pq.read_table(dest / "speakers.parquet").num_rows == 3
    ds = datasets.load_dataset("parquet", data_files=str(dest / "clips.parquet"), split="train")
    assert ds.num_rows == len(df) and "embedding" in ds.column_names
    monkeypatch.chdir(dest)  # audio paths are relative to the release folder
    audio = ds.cast_column("audio_path", datasets.Audio(sampling_rate=16000))[0]["audio_path"]
    assert audio["sampling_rate"] == 16000
    assert len(audio["array"]) == pytest.approx(df["duration"][0] * 16000, abs=800)
    missing = runner.invoke(app, ["dataset", "pull", "v9", "--to", str(dest), "--home", str(home)])
    assert missing.exit_code == 2 and "v1" in missing.output


def test_a_run_the_engine_crashed_in_ends_failed_with_its_report(  # type: ignore[no-untyped-def]
    tmp_path: Path, small_corpus, served_corpus
) -> None:
    """The Prefect UI and its automations see a run with a crashed item as Failed; the
    report is the state's data, and :func:`run_ingest` returns it."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "audio").write_text("a file where the store's audio folder should be")
    one = dataclasses.replace(small_corpus, episodes=small_corpus.episodes[:1])
    sources = str(_corpus_sources(one, served_corpus, tmp_path / "one.csv"))
    state = ingest_flow(sources_file=sources, home=str(home), return_state=True)
    assert state.is_failed(), state
    assert (state.message or "").startswith("the engine crashed on 1 item(s): http"), state
    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport) and report.exit_code == 1
    again = run_ingest(sources_file=sources, home=str(home))
    assert again.exit_code == 1 and len(again.crashed) == 1
    (home / "audio").unlink()
    done = ingest_flow(sources_file=sources, home=str(home), return_state=True)
    assert done.is_completed() and done.result().exit_code == 0
