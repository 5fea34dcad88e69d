"""Voice-cloning TTS: a real release exported in three layouts, coqui's VITS trained on it
(killed and resumed), and its speech scored against the real clips.

The release is made of real speech (three flite voices through sox), real
resemblyzer embeddings, real FLAC clips in a real store, with people's labels
that put one clip of each speaker in the heldout split.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
import typer
from test_storage import commit_episodes
from typer.testing import CliRunner

from convoice.cli.tts import export_tts_command, retrain_tts_command
from convoice.engines import loaders
from convoice.flows.tts import export_tts_flow, retrain_tts_flow
from convoice.models import tts_data
from convoice.models.embed import embed_regions
from convoice.records import SAMPLE_RATE, Clip, ClipStatus, Region, ReleaseClip, Transcript, Word
from convoice.storage import Store
from convoice.synth.sentences import pick_sentences
from convoice.synth.speech import synthesize
from convoice.training.tts_export import ExportError

pytestmark = pytest.mark.usefixtures("prefect_harness")

# recording -> voices talking in it (each voice in two recordings)
EPISODES = {"rec_a": ["rms", "slt"], "rec_b": ["slt", "awb"], "rec_c": ["awb", "rms"]}
PER_VOICE = 3  # clips per voice per recording: 18 clips
HELDOUT = ["rec_a_rms_0", "rec_b_slt_0", "rec_c_awb_0"]  # a person accepted them
REVIEW, REJECTED, EMPTY = "rec_a_slt_2", "rec_b_awb_2", "rec_c_rms_2"
PERSON_REJECTED = "rec_a_rms_1"  # heldout, but rejected by a person: in no export
N_TRAIN = 18 - len(HELDOUT) - 4
RATE = 22050

cli = typer.Typer()
cli.command("export")(export_tts_command)
cli.command("retrain")(retrain_tts_command)


def _words(text: str, seconds: float) -> tuple[Word, ...]:
    parts = text.split()
    step = seconds / len(parts)
    return tuple(Word(w, i * step, (i + 1) * step, 0.95) for i, w in enumerate(parts))


def _clip(store: Store, rec: str, voice: str, k: int, text: str, start: float, cache: Path) -> Clip:
    audio = synthesize(voice, text, cache)
    seconds = len(audio) / SAMPLE_RATE
    clip_id = f"{rec}_{voice}_{k}"
    status = {REVIEW: ClipStatus.REVIEW, REJECTED: ClipStatus.REJECTED}.get(
        clip_id, ClipStatus.ACCEPTED
    )
    transcript = None if clip_id == EMPTY else Transcript(
        text, "en", 0.99, _words(text, seconds), -0.1, 1.2, 0.01
    )  # fmt: skip
    return Clip(
        clip_id=clip_id,
        recording_id=rec,
        start=start,
        end=start + seconds,
        recording_speaker=voice,
        embedding=embed_regions(loaders.voice_encoder(), audio, [Region(0.0, seconds)])[0],
        speaker_id=f"spk_{voice}",
        speaker_confidence=0.95,
        transcript=transcript,
        transcript_confidence=0.95 if transcript else 0.0,
        status=status,
        review_reasons=("low_word_probability",) if status == ClipStatus.REVIEW else (),
        audio_uri=store.write_flac(Store.clip_audio_key(rec, clip_id), audio, SAMPLE_RATE),
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Path:
    """A store with 18 real clips of three voices, people's labels, and release v1."""
    root = tmp_path_factory.mktemp("tts-home")
    store = Store(root)
    sentences = iter(pick_sentences(60, seed=5))
    commit_episodes(
        store,
        EPISODES,
        PER_VOICE,
        sentences,
        lambda rec, voice, k, text, start: _clip(store, rec, voice, k, text, start, tts_cache),
    )
    labels = [{"clip_id": c, "field": "status", "value": "accepted", "labelled_by": "ann"}
              for c in HELDOUT]  # fmt: skip
    labels.append(
        {"clip_id": PERSON_REJECTED, "field": "status", "value": "rejected", "labelled_by": "ann"}
    )
    store.add_labels(labels)
    release = store.release(tag="voices")
    assert release.n_clips == 18
    return root


def _released(home: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(home / "releases" / "v1" / "clips.parquet").to_pylist()
    return {r["clip_id"]: r for r in rows}


def test_rows_become_lines_and_d_vectors() -> None:
    vector = np.zeros(256, np.float32)
    vector[3] = 2.0
    row = {"clip_id": "clip/1", "speaker_id": "spk a", "text": " Hello |\n world ",
           "status": "accepted", "split": "train", "embedding": vector.tolist(),
           "audio_uri": "audio/clips/r/clip_1.flac", "duration": 2.0, "language": "en"}  # fmt: skip
    changes: list[dict[str, Any]] = [
        {"clip_id": "c2", "split": "heldout"},
        {"clip_id": "c3", "text": ""},
        {"clip_id": "c4", "status": "review"},
        {"clip_id": "c5", "embedding": None},
        {"clip_id": "c6", "speaker_id": ""},
    ]
    rows = [ReleaseClip.from_row(r) for r in [row] + [{**row, **change} for change in changes]]
    selection = tts_data.select_clips(rows)
    assert [c.clip_id for c in selection.train] == ["clip/1"]
    assert [c.clip_id for c in selection.heldout] == ["c2"]
    assert selection.skipped == {"empty_text": 1, "status_review": 1, "no_embedding": 1,
                                 "no_speaker": 1}  # fmt: skip
    clip = selection.train[0]
    assert (clip.file_id, clip.speaker, clip.text) == ("clip_1", "spk_a", "Hello , world")
    assert tts_data.metadata_lines(selection.train, "ljspeech") == [
        "clip_1|Hello , world|Hello , world"
    ]
    assert tts_data.metadata_lines(selection.train, "coqui")[1] == (
        "wavs/spk_a/clip_1.wav|Hello , world|spk_a"
    )
    dvec = tts_data.d_vector_map(selection.train, "vctk")
    assert list(dvec) == ["convoice#wav48/spk_a/clip_1"]
    assert dvec["convoice#wav48/spk_a/clip_1"]["embedding"][3] == 1.0  # unit norm
    assert tts_data.export_relpath(selection.heldout[0], "vctk") == "eval/wav48/spk_a/c2.wav"
    assert tts_data.eval_lines(selection.heldout, "coqui") == [
        "file|speaker|text|language",
        "wavs/spk_a/c2.wav|spk_a|Hello , world|en",
    ]
    with pytest.raises(tts_data.TtsDataError, match="unknown TTS export format"):
        tts_data.check_format("wav")
    with pytest.raises(tts_data.TtsDataError, match="share a file name"):
        tts_data.select_clips(
            [ReleaseClip.from_row(r) for r in (row, {**row, "clip_id": "clip 1"})]
        )


def test_only_complete_checkpoints_count_and_survive_pruning(tmp_path: Path) -> None:
    from convoice.training.tts_checkpoints import drop_incomplete, latest_checkpoint, prune

    folder = tmp_path / "coqui" / "convoice-vits-x"
    folder.mkdir(parents=True)
    assert latest_checkpoint(tmp_path) is None
    for step in (2, 4, 6):
        (folder / f"checkpoint_{step}.pth").write_bytes(b"weights")
    for step in (2, 4):  # 6 was being written when the run was killed
        (folder / f"checkpoint_{step}.saved").touch()
    assert latest_checkpoint(tmp_path) == (folder / "checkpoint_4.pth", 4)
    assert drop_incomplete(folder) == [folder / "checkpoint_6.pth"]
    prune(folder, keep=1)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_4.pth", "checkpoint_4.saved"]


def _check_dvectors(out: Path, items: list[dict[str, Any]], released: dict[str, Any]) -> None:
    """Every sample coqui loads has its clip's embedding under coqui's own sample name."""
    from TTS.tts.datasets import add_extra_keys

    d_vectors = json.loads((out / "d_vectors.json").read_text())
    for item in add_extra_keys(items, "en", tts_data.DATASET_NAME):
        entry = d_vectors[item["audio_unique_name"]]
        clip_id = Path(item["audio_file"]).stem
        expected = np.asarray(released[clip_id]["embedding"], np.float32)
        assert entry["name"] == released[clip_id]["speaker_id"]
        assert np.allclose(entry["embedding"], expected / np.linalg.norm(expected), atol=1e-6)


def test_export_three_layouts_with_embeddings_and_attribution(home: Path, tmp_path: Path) -> None:
    from TTS.tts.datasets.formatters import coqui, ljspeech, vctk_old

    released = _released(home)
    train_ids = {c for c, r in released.items() if r["split"] == "train"} - {
        REVIEW,
        REJECTED,
        EMPTY,
    }
    runner = CliRunner()
    done = runner.invoke(cli, ["export", "--dataset", "voices", "--format", "ljspeech",
                               "--to", str(tmp_path / "lj"), "--home", str(home)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert f"{N_TRAIN} training clips" in _flat(done.output)
    assert "3 heldout clips" in _flat(done.output)
    results = {"ljspeech": None}
    for fmt in ("vctk", "coqui"):
        results[fmt] = export_tts_flow(
            dataset="v1", fmt=fmt, to=str(tmp_path / fmt), home=str(home)
        )
    coqui_export = results["coqui"]
    assert coqui_export is not None
    assert (coqui_export.n_train, coqui_export.n_heldout, coqui_export.n_speakers) == (
        N_TRAIN,
        3,
        3,
    )
    assert coqui_export.skipped == {"empty_text": 1, "status_rejected": 2, "status_review": 1}

    lj = ljspeech(str(tmp_path / "lj"), "metadata.csv")
    assert {Path(i["audio_file"]).stem for i in lj} == train_ids
    for line in (tmp_path / "lj" / "metadata.csv").read_text().splitlines():
        clip_id, text, normalized = line.split("|")
        assert text == normalized == released[clip_id]["text"]
    lj_eval = ljspeech(str(tmp_path / "lj"), "metadata_eval.csv")
    assert sorted(Path(i["audio_file"]).stem for i in lj_eval) == sorted(HELDOUT)
    _check_dvectors(tmp_path / "lj", lj + lj_eval, released)

    vctk = vctk_old(str(tmp_path / "vctk"))
    assert {Path(i["audio_file"]).stem for i in vctk} == train_ids
    assert {i["speaker_name"] for i in vctk} == {"VCTK_old_spk_rms", "VCTK_old_spk_slt",
                                                 "VCTK_old_spk_awb"}  # fmt: skip
    vctk_eval = vctk_old(str(tmp_path / "vctk" / "eval"))
    assert sorted(Path(i["audio_file"]).stem for i in vctk_eval) == sorted(HELDOUT)
    _check_dvectors(tmp_path / "vctk", vctk, released)

    items = coqui(str(tmp_path / "coqui"), "metadata.csv")
    assert len(items) == N_TRAIN and all(Path(i["audio_file"]).is_file() for i in items)
    _check_dvectors(tmp_path / "coqui", items, released)

    for item in items + vctk + lj:  # mono 16-bit WAV at 22050 Hz, the clip's length
        info = soundfile.info(item["audio_file"])
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
        clip = released[Path(item["audio_file"]).stem]
        assert abs(info.frames / RATE - clip["duration"]) < 0.01
    speakers = json.loads((tmp_path / "coqui" / "speakers.json").read_text())
    assert sorted(speakers) == ["spk_awb", "spk_rms", "spk_slt"]
    for name, entry in speakers.items():
        own = [np.asarray(released[Path(i["audio_file"]).stem]["embedding"]) for i in items
               if i["speaker_name"] == name]  # fmt: skip
        mean = np.mean([v / np.linalg.norm(v) for v in own], axis=0)
        assert np.allclose(entry["embedding"], mean / np.linalg.norm(mean), atol=1e-5)
    for fmt in ("lj", "vctk", "coqui"):  # the sources' attribution travels with every export
        attribution = (tmp_path / fmt / "ATTRIBUTION.md").read_text()
        for rec in EPISODES:
            assert f"\u201cTalk {rec}\u201d by Ada, CC BY 4.0" in attribution
        eval_rows = (tmp_path / fmt / "eval.csv").read_text().splitlines()
        assert eval_rows[0] == "file|speaker|text|language"
        assert all(row.endswith("|en") for row in eval_rows[1:])
        assert len(eval_rows) == 4 and all((tmp_path / fmt / r.split("|")[0]).is_file()
                                           for r in eval_rows[1:])  # fmt: skip


def test_export_refuses_bad_input_with_a_message(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["export", "--home", str(home), "--to", str(tmp_path / "x")]
    done = runner.invoke(cli, [*base, "--dataset", "v1", "--format", "wav"])
    assert done.exit_code == 2 and "'wav'" in _flat(done.output)  # typer names the choices
    assert all(choice in _flat(done.output) for choice in ("ljspeech", "vctk", "coqui"))
    done = runner.invoke(cli, [*base, "--dataset", "v9", "--format", "coqui"])
    assert done.exit_code == 2 and "no release 'v9'" in _flat(done.output)
    assert "v1 (tag: voices)" in _flat(done.output)
    done = runner.invoke(cli, ["retrain", "--home", str(tmp_path / "empty")])
    assert done.exit_code == 2 and "has no release yet" in _flat(done.output)
    done = runner.invoke(cli, ["retrain", "--home", str(home), "--resume", "tts-nope"])
    assert done.exit_code == 2 and "no TTS training run 'tts-nope'" in _flat(done.output)
    with_checkpoint = {"CONVOICE_TTS__CHECKPOINT": str(tmp_path / "model.pth")}
    done = runner.invoke(cli, ["retrain", "--home", str(home)], env=with_checkpoint)
    assert done.exit_code == 2
    assert "[tts] checkpoint needs its [tts] config" in _flat(done.output)
    done = runner.invoke(cli, ["retrain", "--home", str(home), "--dataset", "v7"])
    assert done.exit_code == 2 and "no release 'v7'" in _flat(done.output)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    done = runner.invoke(cli, ["export", "--home", str(home), "--to", str(tmp_path / "busy"),
                               "--dataset", "v1", "--format", "vctk"])  # fmt: skip
    assert done.exit_code == 2 and "is not empty and holds no TTS export" in _flat(done.output)
    with pytest.raises(ExportError, match="not empty"):
        export_tts_flow(dataset="v1", fmt="coqui", to=str(tmp_path / "busy"), home=str(home))
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def _scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for events in sorted(folder.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            found += [(e.step, e.value) for e in acc.Scalars(tag)]
    return found


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def test_killed_training_resumes_from_its_checkpoint_and_is_scored(
    home: Path, tmp_path: Path
) -> None:
    """`convoice retrain tts` killed after its step-2 checkpoint, then `--resume`d to step 4."""
    import torch
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "CONVOICE_TTS__CHECKPOINT_EVERY": "2", "CONVOICE_TORCH_THREADS": "1"}  # fmt: skip
    command = ("import typer; from convoice.cli.tts import retrain_tts_command;"
               " typer.run(retrain_tts_command)")  # fmt: skip
    log = tmp_path / "killed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", command, "--dataset", "voices", "--home", str(home),
             "--steps", "40", "--no-evaluate"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    runs = home / "runs" / "tts"
    try:
        deadline = time.monotonic() + 300
        while not list(runs.glob("*/coqui/*/checkpoint_2.saved")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # as an operator's machine going down
    finally:
        proc.kill()
        proc.wait()
    (run_dir,) = list(runs.iterdir())
    assert json.loads((run_dir / "params.json").read_text())["dataset"] == "v1"

    done = CliRunner().invoke(
        cli, ["retrain", "--resume", run_dir.name, "--steps", "4", "--home", str(home)]
    )
    assert done.exit_code == 0, done.output
    # What the loop calls: the latest release's latest run, which has its 4 steps: nothing to do.
    report = retrain_tts_flow(home=str(home), steps=4)
    assert (report.run_id, report.dataset) == (run_dir.name, "v1")
    assert report.training.start_step == report.training.steps_done == 4
    assert report.evaluation is None and f"continuing run {run_dir.name}" in report.summary()

    # The resumed run went on from step 2 in the killed run's folder, with its optimizer state.
    (trainer_dir,) = list((run_dir / "coqui").iterdir())
    last = torch.load(trainer_dir / "checkpoint_4.pth", map_location="cpu", weights_only=False)
    assert last["step"] == 4
    for optimizer in last["optimizer"]:  # AdamW counts its own steps: 4, not 2 from a restart
        assert {int(s["step"]) for s in optimizer["state"].values()} == {4}
    assert "Continuing from checkpoint_2.pth" in (trainer_dir / "trainer_0_log.txt").read_text()
    kept = sorted(p.name for p in trainer_dir.glob("checkpoint_*"))
    assert kept == [f"checkpoint_{n}.{ext}" for n in (2, 4) for ext in ("pth", "saved")]
    assert "resumed at step 2" in _flat(done.output) and "to step 4" in _flat(done.output)

    # Losses and parameters in the tracked run; evaluation metrics too.
    losses = _scalars(run_dir, "tts/loss_1")
    assert {step for step, _ in losses} >= {1, 2, 3, 4}
    assert all(np.isfinite(value) and value > 0 for _, value in losses)
    params = json.loads((run_dir / "params.json").read_text())
    assert params["dataset"] == "v1" and params["steps"] == 4
    assert params["settings"]["tts"]["checkpoint_every"] == 5  # the resumed process's own
    metrics = json.loads((run_dir / "metrics.json").read_text())
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    print(done.output)
    print(json.dumps(metrics, indent=1))

    # Zero-shot scores: the real heldout clips are the ceiling; 4 steps of training give noise.
    assert metrics["eval/n"] == 3 and len(evaluation["items"]) == 3
    assert metrics["eval/similarity_real"] > 0.8
    assert metrics["eval/wer_real"] < 0.2
    assert metrics["eval/similarity_synth"] < metrics["eval/similarity_real"]
    assert metrics["eval/wer_synth"] > metrics["eval/wer_real"]
    for item in evaluation["items"]:
        assert item["speaker"] in {"spk_rms", "spk_slt", "spk_awb"} and item["transcript_real"]
        assert item["file"].split("/")[-1].removesuffix(".wav") in HELDOUT


def test_fine_tuning_starts_from_the_operators_checkpoint(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new run from a configured checkpoint (here: one trained above) restores its weights."""
    import torch

    (previous,) = list((home / "runs" / "tts").glob("*/coqui/*/checkpoint_4.pth"))
    monkeypatch.setenv("CONVOICE_TTS__CHECKPOINT", str(previous))
    monkeypatch.setenv("CONVOICE_TTS__CONFIG", str(previous.parent / "config.json"))
    report = retrain_tts_flow(dataset="v1", home=str(home), steps=1, evaluate=False)
    assert report.run_id != previous.parent.parent.parent.name  # a run of its own
    assert (report.training.start_step, report.training.steps_done) == (0, 1)
    log = (report.training.trainer_dir / "trainer_0_log.txt").read_text()
    assert "Restoring from checkpoint_4.pth" in log and "Model restored from step 4" in log
    params = json.loads((report.run_dir / "params.json").read_text())
    assert params["start"] == str(previous)
    before = torch.load(previous, map_location="cpu", weights_only=False)["model"]
    after = torch.load(report.training.checkpoint, map_location="cpu", weights_only=False)["model"]
    assert before.keys() == after.keys()
    # One step from the checkpoint moves the weights a little, not from a fresh start.
    moved = [
        float((after[k] - before[k]).abs().max()) for k in before if before[k].is_floating_point()
    ]
    assert 0 < max(moved) < 0.05
