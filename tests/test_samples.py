"""Sample media: real TTS, real ffmpeg, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from convoice.synth.media_files import make_music, make_silence, make_truncated
from convoice.synth.recordings import librivox_samples, pyannote_sample
from convoice.synth.samples import Corpus, Episode, make_corpus, make_episode
from convoice.synth.sentences import SENTENCES, pick_sentences
from convoice.synth.serve import serve_directory, write_sources_csv
from convoice.synth.speech import VOICES, synthesize


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tts-cache")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Corpus:
    out = tmp_path_factory.mktemp("corpus")
    return make_corpus(out, n_episodes=3, turns_per_episode=5, seed=3, cache_dir=cache)


def _probe(path: Path) -> Any:
    cmd = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _parse_rttm(path: Path) -> list[tuple[str, float, float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        f = line.split()
        assert len(f) == 10 and f[0] == "SPEAKER" and f[2] == "1"
        assert f[5] == f[6] == f[8] == f[9] == "<NA>"
        rows.append((f[1], float(f[3]), float(f[4]), f[7]))
    return rows


def test_sentence_pool_is_plain_and_deterministic() -> None:
    assert len(SENTENCES) >= 150 and len(set(SENTENCES)) == len(SENTENCES)
    for s in SENTENCES:
        assert 5 <= len(s.split()) <= 18 and not any(c.isdigit() for c in s)
    assert pick_sentences(20, 5) == pick_sentences(20, 5) != pick_sentences(20, 6)
    assert len(set(pick_sentences(len(SENTENCES), 1))) == len(SENTENCES)


def test_synthesize_is_16k_float_trimmed_and_cached(cache: Path) -> None:
    text = "The kettle whistled loudly just as the phone began to ring."
    audio = synthesize("slt", text, cache)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.5 < len(audio) / 16_000 < 8.0
    assert np.max(np.abs(audio[:160])) < 0.2 * np.max(np.abs(audio))  # little silence kept
    assert len(list(cache.rglob("*.npy"))) >= 1
    np.testing.assert_array_equal(synthesize("slt", text, cache), audio)
    with pytest.raises(ValueError, match="unknown voice"):
        synthesize("nobody", text, cache)


def test_episodes_agree_with_their_media(corpus: Corpus) -> None:
    for ep in corpus.episodes:
        info = sf.info(ep.audio_path)
        assert info.samplerate == 16_000 and info.channels == 1
        assert info.frames / 16_000 == pytest.approx(ep.duration, abs=1e-3)
        starts = [t.start for t in ep.turns]
        assert starts == sorted(starts)
        assert all(0 < t.start < t.end <= ep.duration for t in ep.turns)
        assert {t.speaker for t in ep.turns} == set(ep.speakers)
        assert all(a.speaker != b.speaker for a, b in zip(ep.turns, ep.turns[1:], strict=False))
        assert all(a.end < b.start for a, b in zip(ep.turns, ep.turns[1:], strict=False))
        probe = _probe(ep.media_path)
        codecs = {s["codec_name"] for s in probe["streams"]}
        assert codecs == {"h264", "aac"}
        media_s = float(probe["format"]["duration"])
        assert media_s == pytest.approx(ep.duration, abs=0.15)
        rows = _parse_rttm(ep.rttm_path)
        assert [(r[1], r[3]) for r in rows] == [(round(t.start, 3), t.speaker) for t in ep.turns]
        assert all(r[0] == ep.episode_id for r in rows)


def test_speech_sits_inside_the_turns(corpus: Corpus) -> None:
    ep = corpus.episodes[0]
    audio, rate = sf.read(ep.audio_path, dtype="float32")
    inside = np.zeros(len(audio), bool)
    for t in ep.turns:
        inside[round(t.start * rate) : round(t.end * rate)] = True
    assert np.max(np.abs(audio[~inside])) < 0.01  # the noise floor only
    assert np.sqrt(np.mean(audio[inside] ** 2)) > 0.03


def test_corpus_recurring_speakers_and_json(corpus: Corpus) -> None:
    assert len(corpus.episodes) == 3
    for speaker in corpus.speakers:
        assert len(corpus.episodes_of(speaker)) >= 2, speaker
    assert Corpus.load(corpus.root) == corpus
    assert Corpus.from_json(corpus.to_json(), corpus.root) == corpus
    data = json.loads(corpus.truth_path.read_text())
    assert data["episodes"][0]["media_path"] == "ep01.mp4"


def test_make_corpus_is_deterministic(corpus: Corpus, cache: Path, tmp_path: Path) -> None:
    again = make_corpus(
        tmp_path, n_episodes=3, turns_per_episode=5, seed=3, cache_dir=cache, make_video=False
    )
    assert [e.turns for e in again.episodes] == [e.turns for e in corpus.episodes]
    assert again.episodes[0].media_path == again.episodes[0].audio_path
    assert not list(tmp_path.glob("*.mp4"))


def test_overlapping_turns(cache: Path, tmp_path: Path) -> None:
    ep = make_episode(
        "ov", ("rms", "slt"), 4, 2, tmp_path, overlap_prob=1.0, make_video=False, cache_dir=cache
    )
    assert isinstance(ep, Episode)
    for a, b in zip(ep.turns, ep.turns[1:], strict=False):
        assert a.start < b.start < a.end < b.end
        assert a.end - b.start <= min(a.duration, b.duration) / 2 + 1e-6
    with pytest.raises(ValueError, match="distinct speakers"):
        make_episode("x", ("rms", "rms"), 4, 0, tmp_path, cache_dir=cache)


def test_voices_are_distinct(cache: Path) -> None:
    import torch
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)
    texts = pick_sentences(3, 11)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small LSTM: one thread is fastest, above all on a busy machine
    try:
        emb = {
            v: np.stack([encoder.embed_utterance(synthesize(v, t, cache)) for t in texts])
            for v in VOICES
        }
    finally:
        torch.set_num_threads(threads)
    for a in VOICES:
        same = [float(emb[a][i] @ emb[a][j]) for i in range(3) for j in range(i + 1, 3)]
        for b in VOICES:
            if a != b:
                cross = float(np.max(emb[a] @ emb[b].T))
                assert cross < min(same) - 0.05, (a, b, cross, min(same))


def test_serve_directory_and_sources_csv(corpus: Corpus, tmp_path: Path) -> None:
    with serve_directory(corpus.root) as base:
        assert base.startswith("http://127.0.0.1:") and base.endswith("/")
        csv_path = write_sources_csv(corpus, base, tmp_path / "sources.csv")
        lines = csv_path.read_text().splitlines()
        assert lines[0] == "url,license,note" and len(lines) == 1 + len(corpus.episodes)
        url = lines[1].split(",")[0]
        assert url == base + "ep01.mp4"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == corpus.episodes[0].media_path.read_bytes()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_bad_media(corpus: Corpus, tmp_path: Path) -> None:
    silent = make_silence(tmp_path / "silence.mp4", 3.0)
    assert float(_probe(silent)["format"]["duration"]) == pytest.approx(3.0, abs=0.15)
    music = make_music(tmp_path / "music.wav", 4.0)
    audio, rate = sf.read(music, dtype="float32")
    assert rate == 16_000 and len(audio) == 64_000 and 0.05 < np.sqrt(np.mean(audio**2)) < 0.9
    src = corpus.episodes[0].media_path
    cut = make_truncated(src, tmp_path / "cut.mp4")
    assert cut.stat().st_size == src.stat().st_size // 2
    with pytest.raises(ValueError, match="only"):
        make_silence(tmp_path / "x.ogg", 1.0)


def test_real_recordings() -> None:
    already = "pyannote.audio" in sys.modules
    wav, rttm = pyannote_sample()
    assert wav.is_file() and sf.info(wav).duration > 10
    assert len({r[3] for r in _parse_rttm(rttm)}) >= 2
    assert already or "pyannote.audio" not in sys.modules
    utterances = librivox_samples()
    assert len(utterances) == 5
    assert all(path.is_file() and sf.info(path).samplerate == 16_000 for path, _ in utterances)
    assert "he was not an ill disposed young man" in {text for _, text in utterances}
