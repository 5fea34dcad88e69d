"""The benchmark's voice inventory, its split, its corpora and ``convoice bench --corpus DIR``."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convoice.bench import corpus as bench_corpus
from convoice.models import evaluation
from convoice.records import SAMPLE_RATE
from convoice.synth import inventory as voices
from convoice.synth.speech import INVENTORY, VOICES, synthesize


def test_split_is_stable_disjoint_and_keeps_the_tuned_voices_in_tune() -> None:
    ids = voices.all_identities()
    groups = {i.name: i.group for i in ids}
    names = [i.name for i in ids]
    first = voices.split(names, groups)
    for seed in range(5):
        shuffled = names[:]
        random.Random(seed).shuffle(shuffled)
        assert voices.split(shuffled, groups) == first
    which = voices.halves()  # the split of the identities and of every mbrola voice
    assert {n: h for n, h in which.items() if not n.startswith("mb-")} == {
        n: h for n, h in first.items() if not n.startswith("mb-")
    }
    tune = {n for n in names if which[n] == "tune"}
    report = {n for n in names if which[n] == "report"}
    assert tune.isdisjoint(report) and tune | report == set(names)
    assert set(VOICES) | {"pyannote_diane", "pyannote_sheila"} <= tune
    assert len(names) >= 20 and len(report) >= 10
    real = {i.name for i in ids if i.real}
    assert report & real and tune & real
    engines = {i.name: i.engine for i in ids}
    for half in (tune, report):  # both halves hold same-engine (hard) pairs, mbrola's too
        per_engine = [engines[n] for n in half if engines[n] != "recorded"]
        assert sum(per_engine.count(e) >= 2 for e in set(per_engine)) >= 3
        assert per_engine.count("mbrola") >= 5


# The halves of the mbrola voices in the languages benchmark (convoice bench --languages)
# since it began: a voice it reports on must never become one the main corpus tunes on.
MBROLA_HALVES = {
    "tune": {"mb-br3", "mb-br4", "mb-de6", "mb-de7", "mb-en1", "mb-fr5", "mb-fr6", "mb-it3",
             "mb-nl2", "mb-tr1"},
    "report": {"mb-br1", "mb-de1", "mb-de2", "mb-fr2", "mb-fr3", "mb-ir1", "mb-it1", "mb-it4",
               "mb-nl3", "mb-pt1", "mb-tr2", "mb-us1", "mb-us2"},
}  # fmt: skip


def test_every_mbrola_voice_is_in_the_same_half_in_both_corpora(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from convoice.synth import multilingual_voices as ml

    main, languages = voices.halves(), ml.halves()
    mbrola = {v.name for v in ml.voices() if v.group.startswith("mbrola")}
    assert mbrola == MBROLA_HALVES["tune"] | MBROLA_HALVES["report"]
    for half, names in MBROLA_HALVES.items():
        assert {n for n in names if languages[n] == half} == names, half
        assert {n for n in names if main[n] == half} == names, half
    used = [i for i in voices.all_identities() if i.engine == "mbrola"]
    assert {i.name for i in used} == mbrola - set(voices.MBROLA_LEFT_OUT)
    assert len(used) >= 12 and all(ml.by_name(i.name).group == i.group for i in used)
    # a voice the main corpus leaves out keeps its place in the deal: without it, de1
    # would move de2, de6 and de7
    kept = tuple(i for i in voices.SYNTHETIC if i.name != "mb-de1")
    monkeypatch.setattr(voices, "SYNTHETIC", kept)
    assert voices.halves() == main
    rest = {n: g for n, g in voices.mbrola_groups().items() if n != "mb-de1"}
    assert voices.split(rest, rest)["mb-de7"] != main["mb-de7"]


def test_inventory_finds_the_voices_and_recordings_that_ship() -> None:
    here = {ident.name: ok for ident, _, ok in voices.inventory()}
    missing = [name for name, ok in here.items() if not ok]
    assert not missing, f"not installed: {missing} (make setup installs them)"
    assert set(VOICES) <= set(INVENTORY)
    table = voices.describe(voices.inventory())
    assert "mb-fr2           report mbrola-fr  synthetic fr   yes   Debian mbrola-fr2" in table
    assert "uqm_bennett      report recorded-3 real      en   yes   Debian uqm-voice" in table
    assert (
        len({line.index(" synthetic ") for line in table.splitlines() if " synthetic " in line})
        == 1
    )
    assert "no commercial use" in table
    diane = voices.utterances(voices.REAL[0])
    assert diane and all(u.text and u.end > u.start for u in diane)
    audio = voices.load_utterance(voices.utterances(voices.REAL[3])[0])  # alsa: 48 kHz source
    assert audio.dtype == np.float32 and 0.3 < len(audio) / SAMPLE_RATE < 2.0


def test_no_two_espeak_voices_of_the_inventory_say_a_line_alike(tts_cache: Path) -> None:
    """Every espeak-ng voice of the benchmark is its own voice: an engine that ignores a
    variant (espeak-ng 1.51 with "en-gb+f4") would put one voice under two names, and
    the benchmark would count the engine's right answer as a merge."""
    line = "The cat sleeps on the warm windowsill."
    names = sorted(name for name, voice in INVENTORY.items() if voice.engine == "espeak")
    audio = {name: synthesize(name, line, tts_cache) for name in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = len(audio[a]) == len(audio[b]) and np.allclose(audio[a], audio[b], atol=1e-4)
            if same:
                raise AssertionError(f"{a} and {b} are the same audio")


def test_piper_says_a_line_the_same_way_each_time(tmp_path: Path) -> None:
    """A corpus made on another machine (another TTS cache) is the same corpus: piper's
    random noise is off for the benchmark's voice (with it, two calls differ in length)."""
    line = "The cat sleeps on the warm windowsill."
    first = synthesize("piper_joe", line, tmp_path / "one")
    second = synthesize("piper_joe", line, tmp_path / "two")
    assert np.array_equal(first, second)


def test_a_voice_made_another_way_makes_the_corpus_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A corpus on disk is reused only while its metadata is the same: the voices' own
    keys are in it, so changing how a voice is synthesised (session 24's en-GB voices)
    makes the corpus again instead of scoring the engine on the old voice's audio."""
    ident = next(i for i in voices.identities("report") if i.name == "espeak_gb_f")
    before = bench_corpus.identity_metadata([ident], "report")
    assert before["corpus_version"] == bench_corpus.CORPUS_VERSION
    assert before["identities"]["espeak_gb_f"]["voices"] == [INVENTORY["espeak_gb_f"].key()]
    old_voice = dataclasses.replace(INVENTORY["espeak_gb_f"], name="en-gb+f4")
    monkeypatch.setitem(INVENTORY, "espeak_gb_f", old_voice)
    assert bench_corpus.identity_metadata([ident], "report") != before


@pytest.mark.parametrize("voice", ["cs_ph", "piper_joe", "slt_hts", "mb-de1", "mb-fr2"])
def test_new_voices_speak(voice: str, tts_cache: Path) -> None:
    audio = synthesize(voice, "The cat sleeps on the warm windowsill.", tts_cache)
    assert 1.0 < len(audio) / SAMPLE_RATE < 6.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.02


def test_casts_put_everyone_in_three_episodes_and_pair_same_engine_voices() -> None:
    ids = voices.identities("report")
    n = bench_corpus.fewest_episodes(ids, 3, seed=11)
    casts = bench_corpus.plan_casts(ids, n, 3, seed=11)
    counts = {i.name: sum(i.name in c for c in casts) for i in ids}
    assert min(counts.values()) >= 3
    engine = {i.name: i.engine for i in ids}
    assert sum(engine[c[0]] == engine[c[1]] for c in casts) >= n // 3
    with pytest.raises(ValueError, match="fewer than 3"):
        bench_corpus.plan_casts(ids, n - 3, 3, seed=11)


def test_calibration_figures() -> None:
    conf = [0.95] * 10 + [0.55] * 10
    right = [True] * 9 + [False] + [True] * 4 + [False] * 6
    table = evaluation.reliability(conf, right)
    assert [(b.low, b.clips) for b in table] == [(0.5, 10), (0.9, 10)]
    assert table[1].accuracy == pytest.approx(0.9)
    ece = evaluation.expected_calibration_error(table)
    assert ece == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)
    assert evaluation.reliability([1.0], [True])[0].low == pytest.approx(0.9)


def test_a_calibrated_score_has_an_ece_floor_that_shrinks_with_clips_and_is_zero_when_sure() -> (
    None
):
    assert evaluation.ece_floor([1.0] * 50 + [0.0] * 50) == (0.0, 0.0, 0.0)
    assert evaluation.ece_floor([]) == (0.0, 0.0, 0.0)
    # 280 clips said 0.5: one bin whose share right scatters by sqrt(0.25 / 280); the mean
    # absolute gap of a normal is sqrt(2 / pi) of that
    mean, low, high = evaluation.ece_floor([0.5] * 280)
    assert mean == pytest.approx((0.25 / 280) ** 0.5 * (2 / math.pi) ** 0.5, rel=0.1)
    assert low < mean < high
    assert evaluation.ece_floor([0.5] * 280) == (mean, low, high)  # the same clips, the same floor
    assert evaluation.ece_floor([0.5] * 2800)[0] < mean / 3
    # a score that says 0.5 for clips always right is far above its floor
    table = evaluation.reliability([0.5] * 280, [True] * 280)
    assert evaluation.expected_calibration_error(table) == pytest.approx(0.5)
    assert 10 * mean < 0.5


def test_b_cubed_by_group_sees_a_merge_from_both_sides() -> None:
    truth = ["a", "a", "p", "p"]
    merged = ["x", "x", "x", "x"]
    groups = ["synthetic", "synthetic", "real", "real"]
    out = evaluation.b_cubed_by_group(truth, merged, groups)
    assert out["real"][0] == pytest.approx(0.5) and out["real"][1] == 1.0
    assert evaluation.b_cubed_by_group(truth, truth, groups)["real"][2] == 1.0


def test_two_voice_clips_and_shares_in_score() -> None:
    truth = {"r": [evaluation.RefTurn(0, 4, "a", "one two"), evaluation.RefTurn(3, 8, "b", "")]}
    clips = [
        {"recording_id": "r", "start": 0.0, "end": 3.0, "speaker_id": "s1", "status": "accepted",
         "speaker_confidence": 1.0, "words": [{"word": "one", "start": 0.5, "end": 1.0},
                                              {"word": "two", "start": 1.5, "end": 2.0}]},
        {"recording_id": "r", "start": 3.0, "end": 8.0, "speaker_id": "s2", "status": "review",
         "speaker_confidence": 0.5, "words": []},
    ]  # fmt: skip
    out = evaluation.score(clips, truth, 10.0, frozenset({"b"}))  # the review clip: a and b
    assert out["accepted_share_of_speech"] == pytest.approx(3 / 8)
    assert out["two_voice_clips"] == 1.0 and out["accepted_two_voice_clips"] == 0.0
    assert out["wer_accepted"] == 0.0  # b's turn has no text: not scored
    assert out["bcubed_f1_real"] == 1.0 and "bcubed_f1_synthetic" in out


def test_silence_in_a_clip_is_not_a_second_voice() -> None:
    """Two voices are counted by the speech a clip holds, not by its length: one voice
    with 0.3 s of silence past its turn is one voice (but under 90 % of the clip's length)."""
    turns = [evaluation.RefTurn(0, 1.2, "a", ""), evaluation.RefTurn(1.8, 4, "b", "")]
    alone = {"recording_id": "r", "start": 0.0, "end": 1.5}
    both = {"recording_id": "r", "start": 0.0, "end": 2.2}
    assert evaluation.main_voice_share(alone, turns) == 1.0
    assert evaluation.clip_truth(alone, turns)[1] == pytest.approx(0.8)
    assert evaluation.main_voice_share(both, turns) == pytest.approx(1.2 / 1.6)
    clips = [
        {**alone, "speaker_id": "s1", "status": "accepted", "speaker_confidence": 1.0,
         "words": []},
        {"recording_id": "r", "start": 1.8, "end": 4.0, "speaker_id": "s2", "status": "accepted",
         "speaker_confidence": 1.0, "words": []},
    ]  # fmt: skip
    out = evaluation.score(clips, {"r": turns}, 4.0)
    assert out["two_voice_clips"] == 0.0 and out["accepted_two_voice_clips"] == 0.0
    assert out["accepted_impure_clips"] == 1.0
    clips[0] = {**clips[0], **both}
    assert evaluation.score(clips, {"r": turns}, 4.0)["accepted_two_voice_clips"] == 1.0


def _own_corpus(folder: Path, cache: Path) -> None:
    """Two episodes as an operator would bring them: WAV + RTTM, one with JSON turns and a
    whole transcript, and a stray media file without annotation."""
    from convoice.synth.samples import make_episode

    for i, cast in enumerate((("rms", "slt"), ("slt", "ked"))):
        ep = make_episode(f"show{i}", cast, 4, 40 + i, folder, make_video=False, cache_dir=cache)
        if i == 1:
            turns = [{"start": t.start, "end": t.end, "speaker": t.speaker, "text": t.text}
                     for t in ep.turns]  # fmt: skip
            (folder / "show1.json").write_text(json.dumps(turns))
            ep.rttm_path.unlink()
            (folder / "show1.txt").write_text(" ".join(t.text for t in ep.turns))
    (folder / "show0.wav").rename(folder / "Show 0.wav")  # a space in the name
    (folder / "show0.rttm").rename(folder / "Show 0.rttm")
    (folder / "stray.wav").write_bytes((folder / "Show 0.wav").read_bytes())


def test_load_annotated_reads_the_format_and_says_what_it_skips(
    tmp_path: Path, tts_cache: Path
) -> None:
    _own_corpus(tmp_path, tts_cache)
    corpus, skipped = bench_corpus.load_annotated(tmp_path)
    assert [e.episode_id for e in corpus.episodes] == ["Show 0", "show1"]
    assert skipped == ["stray.wav: no stray.rttm or stray.json"]
    assert corpus.episodes[1].turns[0].text and not corpus.episodes[0].turns[0].text
    assert "show1" in corpus.metadata["transcripts"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(bench_corpus.CorpusFormatError, match="no media file"):
        bench_corpus.load_annotated(empty)
    (tmp_path / "show1.json").write_text("{not json")
    with pytest.raises(bench_corpus.CorpusFormatError, match=r"show1\.json"):
        bench_corpus.load_annotated(tmp_path)


def test_bench_corpus_dir_scores_the_engine_on_own_audio(
    tmp_path: Path, tts_cache: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from typer.testing import CliRunner

    from convoice.cli.root import app
    from convoice.storage import Store

    own = tmp_path / "own"
    own.mkdir()
    _own_corpus(own, tts_cache)
    out, kept = tmp_path / "bench.json", tmp_path / "kept"
    temp = tmp_path / "temp"  # the bench's scratch stores, each removed when scored
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    args = ["bench", "--corpus", str(own), "--no-naive", "--profile", "--repeat", "2"]
    args += ["--out", str(out), "--keep-stores", str(kept)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    printed = " ".join(done.output.split())  # the console wraps long lines
    assert "stray.wav: no stray.rttm" in printed
    assert "reliability of speaker_confidence" in printed
    assert f"stores kept (the labels scored above, one per draw): seed 0: {kept}/corpus" in printed
    assert "nothing may be fitted on these stores" in printed
    assert not [p.name for p in temp.iterdir() if p.name.startswith("convoice-bench-")]
    figures = json.loads(out.read_text())
    assert figures["kept_stores"] == [[0, str(kept / "corpus")]]
    assert len(Store(str(kept / "corpus")).clips()) == figures["quality"]["clips"]
    again = CliRunner().invoke(app, ["bench", "--corpus", str(own), "--keep-stores", str(kept)])
    assert again.exit_code == 2 and "not an empty directory" in " ".join(again.output.split())
    _check_profile(done.output, figures)
    quality = figures["quality"]
    assert quality["true_speakers"] == 3.0 and quality["clips"] > 4
    assert quality["bcubed_f1_cross_episode"] > 0.8
    assert quality["wer_transcripts_all_clips"] < 0.3
    assert 0.0 <= quality["speaker_confidence_ece"] <= 1.0
    for name in ("corpus_engine", "pyannote_sample_engine"):  # DER and its parts
        parts = [quality[f"der_{name}_{k}"] for k in ("missed", "false_alarm", "confusion")]
        assert quality[f"der_{name}"] == pytest.approx(sum(parts)), name
    assert 0.0 < quality["der_corpus_engine"] < 0.3
    bad = CliRunner().invoke(app, ["bench", "--corpus", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "is not a directory" in " ".join(bad.output.split())
    never = CliRunner().invoke(app, ["bench", "--corpus", str(own), "--profile", "--repeat", "0"])
    assert never.exit_code == 2 and "at least 1" in " ".join(never.output.split())


def _check_profile(output: str, figures: dict[str, Any]) -> None:
    """``--profile --repeat 2``: one row per timed thing and per stage: median wall seconds,
    their spread, the ratio of medians to Whisper alone's, and the same for CPU seconds."""
    lines = output[output.index("profile:") :].splitlines()
    assert "2 rounds alternating" in " ".join(lines[0:2]) and "/ W" in output
    rows = {line[:72].strip(): line[72:].split() for line in lines if line[72:].strip()}
    runs = figures["profile_runs"]
    assert len(runs) == 2 and figures["repeat"] == 2
    for what in (
        "faster-whisper base int8, batched 8, greedy, VAD, no word timestamps",
        "the same with word_timestamps=True",
        "`convoice ingest` as a process (CLI start to exit)",
        "the flow (in this process, models loaded)",
        *figures["flow_stages"],
    ):
        wall, spread, ratio, cpu, cpu_spread, cpu_ratio = rows[what]
        low, high = (float(x) for x in spread.split("-"))
        assert 0 <= low <= float(wall) <= high and float(ratio) >= 0, what
        assert float(cpu) >= 0 and float(cpu_ratio) >= 0 and "-" in cpu_spread, what
    for what in (
        "its start-up and exit (imports, Prefect's server, flow run set-up)",
        "its flow (wall time its report gives; models finish loading in it)",
    ):
        assert rows[what][-1] == "-" and float(rows[what][0]) > 0, what
    whisper = rows["faster-whisper base int8, batched 8, greedy, VAD, no word timestamps"]
    assert whisper[2] == "1.00" and whisper[5] == "1.00"
    for run in runs:
        assert 0 < run["process_flow_s"] < run["process_s"]
        assert run["whisper_cpu_s"] > 0 and run["whisper_words_cpu_s"] > 0
        assert run["process_cpu_s"] > 0 and run["flow_cpu_s"] > 0
        assert {"segment", "embed", "transcribe", "commit"} <= set(run["flow_stages_cpu"])
        assert run["clips"] == figures["quality"]["clips"]
    assert figures["whisper_words_s"] > 0 and figures["process_s"] > 0 and figures["flow_s"] > 0
    assert {"segment", "embed", "transcribe", "commit"} <= set(figures["flow_stages"])


def test_an_episode_mixes_a_real_person_and_a_voice_with_channel_noise_and_overlap(
    tmp_path: Path, tts_cache: Path
) -> None:
    import soundfile as sf

    ids = [i for i in voices.all_identities() if i.name in {"librivox_reader", "cs_ph"}]
    speech = bench_corpus._Speech(ids, seed=3, cache_dir=tts_cache)
    cond = bench_corpus.Condition("test", "phone", "guest", 10.0, 1.0)
    ep = bench_corpus.make_half_episode(
        "x1", ("librivox_reader", "cs_ph"), cond, speech, 4, 5, tmp_path
    )
    assert {t.speaker for t in ep.turns} == {"librivox_reader", "cs_ph"}
    real = [t for t in ep.turns if t.speaker == "librivox_reader"]
    assert all(t.text.split()[0] in {"and", "he", "unless", "had"} for t in real)
    pairs = zip(ep.turns, ep.turns[1:], strict=False)
    assert all(b.start < a.end for a, b in pairs)  # overlap_prob 1: every turn overlaps
    audio, rate = sf.read(ep.audio_path)
    assert rate == SAMPLE_RATE and abs(len(audio) / rate - ep.duration) < 0.01
    assert ep.rttm_path.read_text().count("SPEAKER") == 4 and ep.media_path.suffix == ".mp4"
    with pytest.raises(ValueError, match="must be 'tune' or 'report'"):
        voices.identities("both")


def test_every_channel_gives_the_same_samples_each_time() -> None:
    """Session 24: sox dithered the telephone's mu-law step with an unseeded generator, so
    two makes of one corpus differed in every telephone episode (up to 0.015 of full scale)
    and the engine's clips with them (tune18 kept 14 s or 15 s)."""
    t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    for channel in ("phone", "reverb", "eq"):
        first = bench_corpus._sox_effect(audio, channel)
        assert np.array_equal(first, bench_corpus._sox_effect(audio, channel)), channel
