"""The voice bank service over a real release: every endpoint, every refusal, and the page.

The release is made of real speech (flite and festival voices through sox), real
resemblyzer embeddings and real FLAC clips in a real store (as in test_tts.py);
the service runs the real synthesisers (espeak-ng, flite, piper), the real
WORLD matching, the real Whisper and ffmpeg. Uploads are real audio files in
every accepted container, made with ffmpeg.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from test_storage import commit_episodes

from convoice.bench.service import SENTENCES as SENTENCES_20
from convoice.config import ServiceSettings, Settings
from convoice.engines import loaders
from convoice.models import voicebank as vb
from convoice.models.embed import embed_regions
from convoice.records import SAMPLE_RATE, Clip, ClipStatus, Region, Transcript, Word
from convoice.service import synthesisers as syn
from convoice.service.app import create_app
from convoice.service.bank import load_bank
from convoice.storage import Store
from convoice.synth.sentences import pick_sentences
from convoice.synth.serve import free_port
from convoice.synth.speech import synthesize

EPISODES = {"rec_a": ["rms", "slt", "ked"], "rec_b": ["slt", "awb"], "rec_c": ["awb", "rms", "ked"]}
PER_VOICE = 2  # clips per voice per recording: 4 accepted clips per voice
EXCLUDED = "spk_ked"  # the operator's opt-out list
SENTENCE = "Please bring a warm coat, the evenings are getting colder."


def _clip(store: Store, rec: str, voice: str, k: int, text: str, start: float, cache: Path) -> Clip:
    audio = synthesize(voice, text, cache)
    seconds = len(audio) / SAMPLE_RATE
    words = tuple(Word(w, 0.0, seconds, 0.95) for w in text.split())
    clip_id = f"{rec}_{voice}_{k}"
    return Clip(
        clip_id=clip_id,
        recording_id=rec,
        start=start,
        end=start + seconds,
        recording_speaker=voice,
        embedding=embed_regions(loaders.voice_encoder(), audio, [Region(0.0, seconds)])[0],
        speaker_id=f"spk_{voice}",
        speaker_confidence=0.95,
        transcript=Transcript(text, "en", 0.99, words, -0.1, 1.2, 0.01),
        transcript_confidence=0.95,
        status=ClipStatus.ACCEPTED,
        review_reasons=(),
        audio_uri=store.write_flac(Store.clip_audio_key(rec, clip_id), audio, SAMPLE_RATE),
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Path:
    """A store of four voices in three CC recordings, released as v1."""
    root = tmp_path_factory.mktemp("bank-home")
    store = Store(root)
    sentences = iter(pick_sentences(40, seed=3))
    commit_episodes(
        store,
        EPISODES,
        PER_VOICE,
        sentences,
        lambda rec, voice, k, text, start: _clip(store, rec, voice, k, text, start, tts_cache),
    )
    store.release(tag="bank")
    return root


def _settings(home: Path, **service: Any) -> Settings:
    base = ServiceSettings(
        exclude=[EXCLUDED], requests_per_minute=10_000, keep_dir=str(home / "kept")
    )
    return Settings(home=str(home), service=replace(base, **service))


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(home))) as test_client:
        yield test_client


def _wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _convert(wav: bytes, suffix: str, tmp: Path) -> bytes:
    src, dst = tmp / "in.wav", tmp / f"out{suffix}"
    src.write_bytes(wav)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), str(dst)], check=True
    )
    return dst.read_bytes()


def _speech(voice: str, n: int, seed: int, cache: Path) -> np.ndarray:
    gap = np.zeros(SAMPLE_RATE // 3, np.float32)
    parts = [np.concatenate([synthesize(voice, s, cache), gap]) for s in pick_sentences(n, seed)]
    return np.concatenate(parts)


def _probe(data: bytes, tmp: Path, suffix: str) -> dict[str, Any]:
    path = tmp / f"probe{suffix}"
    path.write_bytes(data)
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, Any] = json.loads(out.stdout)["format"]
    return found


# -- pure pieces ------------------------------------------------------------------------


def test_language_guess_search_and_mels() -> None:
    assert vb.guess_language("Der Hund ist nicht mit den Kindern im Garten") == "de"
    assert vb.guess_language("Le chat est dans la maison avec les enfants") == "fr"
    assert vb.guess_language("Привет, как дела?") == "ru"
    assert vb.guess_language("12345") == ""
    voices = [
        vb.BankVoice("spk_1", vb.DATASET, "Ada", ("en",)),
        vb.BankVoice("espeak-ng:de", vb.SHIPPED, "espeak-ng de", ("de",)),
    ]
    assert [v.voice_id for v in vb.search(voices, language="de-DE")] == ["espeak-ng:de"]
    assert [v.voice_id for v in vb.search(voices, query="ADA")] == ["spk_1"]
    assert vb.normalise_exclude(" a, b ,") == {"a", "b"}
    assert [len(s.split()) for s in SENTENCES_20] == [20] * len(SENTENCES_20)
    mel = vb.mel_spectrogram_db(np.sin(np.arange(16000) * 0.2).astype(np.float32), 16000)
    assert mel.shape[0] == 80 and mel.max() == 0.0 and mel.min() >= -80.0


def test_one_voice_rule_tells_one_voice_from_two(tts_cache: Path) -> None:
    from convoice.service.bank import speech_regions, speech_windows

    one = _speech("rms", 3, 1, tts_cache)
    two = np.concatenate([_speech("rms", 2, 2, tts_cache), _speech("slt", 2, 3, tts_cache)])
    same, _ = vb.split_voices(speech_windows(one, speech_regions(one)))
    mixed, share = vb.split_voices(speech_windows(two, speech_regions(two)))
    assert same > vb.TWO_VOICES_BELOW > mixed and share >= vb.MIN_SHARE


# -- the bank ---------------------------------------------------------------------------


def test_voices_list_dataset_speakers_and_shipped_voices(client: TestClient) -> None:
    data = client.get("/v1/voices").json()
    assert data["release"] == "v1"
    ids = {v["id"]: v for v in data["voices"]}
    assert {"spk_rms", "spk_slt", "spk_awb"} <= set(ids) and EXCLUDED not in ids
    assert {"espeak-ng:de", "espeak-ng:zh", "flite:slt", "piper:joe"} <= set(ids)
    rms = ids["spk_rms"]
    assert rms["kind"] == "dataset" and rms["n_clips"] == 4 and rms["languages"] == ["en"]
    assert {a["recording_id"] for a in rms["attributions"]} == {"rec_a", "rec_c"}
    assert all(a["license"] == "CC-BY-4.0" and a["text"] for a in rms["attributions"])
    flac = client.get(rms["clips"][0])
    assert flac.status_code == 200 and soundfile.info(io.BytesIO(flac.content)).duration > 1.0
    png = client.get(rms["mel"])
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    german = client.get("/v1/voices", params={"language": "de"}).json()["voices"]
    assert [v["id"] for v in german] == ["espeak-ng:de"]
    found = client.get("/v1/voices", params={"q": "rms"}).json()["voices"]
    assert {v["id"] for v in found} == {"spk_rms", "flite:rms"}


def test_an_excluded_speaker_is_refused_everywhere(client: TestClient, tts_cache: Path) -> None:
    assert client.get(f"/v1/voices/{EXCLUDED}").status_code == 403
    assert client.get(f"/v1/voices/{EXCLUDED}/mel.png").status_code == 403
    refused = client.post("/v1/speech", data={"text": SENTENCE, "voice": EXCLUDED, "mode": "match"})
    assert refused.status_code == 403 and refused.json()["error"] == "excluded_voice"
    assert "opt-out" in refused.json()["detail"]
    assert client.get("/v1/clips/rec_a_ked_0.flac").status_code == 404
    batch = client.post("/v1/speech/batch", json={"items": [{"text": SENTENCE, "voice": EXCLUDED}]})
    assert batch.status_code == 403
    upload = _wav_bytes(_speech("ked", 3, 4, tts_cache))
    matched = client.post("/v1/voices/match", files={"file": ("ked.wav", upload, "audio/wav")})
    assert matched.status_code == 200
    assert EXCLUDED not in {v["id"] for v in matched.json()["nearest"]}


# -- speech -----------------------------------------------------------------------------


def test_a_shipped_voice_speaks_as_itself_in_wav_and_mp3(
    client: TestClient, tmp_path: Path
) -> None:
    wav = client.post("/v1/speech", data={"text": SENTENCE, "voice": "flite:slt"})
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    assert wav.headers["x-convoice-synthesiser"] == "flite"
    assert wav.headers["x-convoice-kind"] == "shipped"
    assert float(_probe(wav.content, tmp_path, ".wav")["duration"]) > 2.0
    mp3 = client.post("/v1/speech", data={"text": SENTENCE, "voice": "piper:joe", "format": "mp3"})
    assert mp3.status_code == 200 and mp3.headers["x-convoice-synthesiser"] == "piper"
    assert _probe(mp3.content, tmp_path, ".mp3")["format_name"] == "mp3"
    german = client.post(
        "/v1/speech",
        data={
            "text": "Guten Morgen, wie geht es dir heute?",
            "voice": "espeak-ng:de",
            "format": "json",
        },
    )
    assert german.status_code == 200 and german.json()["language"] == "de"
    wrong = client.post(
        "/v1/speech", data={"text": SENTENCE, "voice": "espeak-ng:de", "language": "en"}
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "wrong_language"


def test_a_dataset_voice_is_matched_and_labelled_as_a_match(client: TestClient) -> None:
    response = client.post(
        "/v1/speech", data={"text": SENTENCE, "voice": "spk_awb", "mode": "match", "format": "json"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["kind"] == "matched" and result["synthesiser"] == "matched"
    assert "not a clone" in result["label"] and result["target"] == "spk_awb"
    assert 0.0 < result["similarity"] <= 1.0 and 0.0 <= result["wer"] < 0.5
    assert result["mel"]["reference"].startswith("data:image/png;base64,")
    audio = client.get(result["audio"]["wav"])
    assert soundfile.info(io.BytesIO(audio.content)).duration == pytest.approx(
        result["seconds"], abs=0.01
    )
    nearest = client.post(
        "/v1/speech",
        data={"text": SENTENCE, "voice": "spk_slt", "mode": "nearest", "format": "json"},
    ).json()
    assert nearest["kind"] == "shipped" and "not the requested voice" in nearest["label"]


def test_no_cloning_synthesiser_means_a_refusal_with_the_nearest_voices(client: TestClient) -> None:
    response = client.post(
        "/v1/speech", data={"text": SENTENCE, "voice": "spk_awb", "mode": "clone"}
    )
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "no_cloning_synthesiser" and "nothing installed" in body["detail"]
    assert body["nearest"] and all(v["id"] != "spk_awb" for v in body["nearest"])


def test_an_operator_checkpoint_that_is_missing_or_wrong_is_a_clear_error(
    home: Path, tmp_path: Path
) -> None:
    with pytest.raises(syn.SynthesiserUnavailable, match="is not a directory"):
        syn.check_checkpoint_dir(tmp_path / "nowhere")
    with pytest.raises(syn.SynthesiserUnavailable, match=r"no config\.json"):
        syn.check_checkpoint_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": "tacotron2"}))
    with pytest.raises(syn.SynthesiserUnavailable, match="XTTS-v2"):
        syn.check_checkpoint_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": "xtts"}))
    with pytest.raises(syn.SynthesiserUnavailable, match=r"no \*\.pth"):
        syn.check_checkpoint_dir(tmp_path)
    (tmp_path / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(syn.SynthesiserUnavailable, match=r"vocab\.json"):
        syn.check_checkpoint_dir(tmp_path)
    (tmp_path / "vocab.json").write_text("{}")
    settings = _settings(home, checkpoint_dir=str(tmp_path))
    bank = load_bank(settings)
    with TestClient(create_app(settings, bank=bank)) as other:
        response = other.post("/v1/speech", data={"text": SENTENCE, "voice": "spk_rms"})
    assert response.status_code == 503 and response.json()["error"] == "checkpoint_unavailable"
    assert str(tmp_path) in response.json()["detail"]


# -- uploads ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp3", ".m4a", ".ogg", ".webm"])
def test_an_upload_finds_its_speaker_in_every_container(
    client: TestClient, tts_cache: Path, tmp_path: Path, suffix: str
) -> None:
    data = _convert(_wav_bytes(_speech("rms", 3, 21, tts_cache)), suffix, tmp_path)
    response = client.post("/v1/voices/match", files={"file": (f"me{suffix}", data)})
    assert response.status_code == 200, response.text
    nearest = response.json()["nearest"]  # the dataset speaker and the flite voice it was made of
    assert {nearest[0]["id"], nearest[1]["id"]} == {"spk_rms", "flite:rms"}
    assert nearest[1]["similarity"] > nearest[2]["similarity"] + 0.05


def test_uploads_are_deleted_unless_kept(client: TestClient, home: Path, tts_cache: Path) -> None:
    kept = home / "kept"
    upload = _wav_bytes(_speech("slt", 3, 22, tts_cache))
    first = client.post(
        "/v1/voices/match", files={"file": ("a.wav", upload)}, data={"keep": "false"}
    )
    assert first.json()["kept"] is False and not (kept.exists() and any(kept.iterdir()))
    second = client.post(
        "/v1/voices/match", files={"file": ("a.wav", upload)}, data={"keep": "true"}
    )
    assert second.json()["kept"] is True and [p.read_bytes() for p in kept.iterdir()] == [upload]
    speech = client.post(
        "/v1/speech",
        files={"file": ("a.wav", upload)},
        data={"text": SENTENCE, "mode": "match", "format": "json"},
    )
    assert speech.status_code == 200 and speech.json()["target"] == "your recording"
    assert speech.json()["similarity"] > 0.5


def test_every_refusal_has_a_status_and_a_message(client: TestClient, tts_cache: Path) -> None:
    def match(name: str, data: bytes) -> dict[str, Any]:
        response = client.post("/v1/voices/match", files={"file": (name, data)})
        return {"status": response.status_code, **response.json()}

    speech = _speech("rms", 2, 30, tts_cache)
    assert match("notes.txt", b"hello")["status"] == 415
    assert match("broken.wav", b"RIFF not really a wav")["error"] == "undecodable"
    assert (
        match("silence.wav", _wav_bytes(np.zeros(5 * SAMPLE_RATE, np.float32)))["error"]
        == "no_speech"
    )
    assert match("short.wav", _wav_bytes(speech[: 2 * SAMPLE_RATE]))["error"] == "too_short"
    long = np.tile(speech, int(np.ceil(62 * SAMPLE_RATE / len(speech))))
    assert match("long.wav", _wav_bytes(long))["error"] == "too_long"
    two = np.concatenate([_speech("rms", 2, 31, tts_cache), _speech("slt", 2, 32, tts_cache)])
    refused = match("two.wav", _wav_bytes(two))
    assert refused["status"] == 422 and refused["error"] == "several_voices"
    assert "more than one voice" in refused["detail"]
    empty = client.post("/v1/speech", data={"text": "   ", "voice": "flite:rms"})
    assert empty.status_code == 422 and empty.json()["error"] == "empty_text"
    unknown = client.post("/v1/speech", data={"text": SENTENCE, "voice": "spk_nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_voice"
    long_text = client.post("/v1/speech", data={"text": "word " * 400, "voice": "flite:rms"})
    assert long_text.status_code == 422 and long_text.json()["error"] == "text_too_long"
    assert client.post("/v1/speech", data={"text": SENTENCE}).json()["error"] == "no_voice"


def test_real_recordings_one_reader_passes_a_conversation_does_not(client: TestClient) -> None:
    """Real people: the LibriVox reader of pocketsphinx-testdata, pyannote's two-person sample."""
    import pyannote.audio

    librivox = sorted(Path("/usr/share/pocketsphinx/test/data/librivox").glob("*.wav"))
    if not librivox:
        pytest.skip("no pocketsphinx-testdata: apt-get install pocketsphinx-testdata")
    one = client.post("/v1/voices/match", files={"file": ("reader.wav", librivox[0].read_bytes())})
    assert one.status_code == 200, one.text
    sample = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
    two = client.post("/v1/voices/match", files={"file": ("talk.wav", sample.read_bytes())})
    assert two.status_code == 422 and two.json()["error"] == "several_voices"


def test_size_and_rate_limits(home: Path) -> None:
    settings = _settings(home, max_upload_mb=0.05, requests_per_minute=3)
    bank = load_bank(settings)
    with TestClient(create_app(settings, bank=bank)) as limited:
        big = limited.post("/v1/voices/match", files={"file": ("big.wav", b"\0" * 400_000)})
        assert big.status_code == 413 and "limit is 0.05 MB" in big.json()["detail"]
        codes = [
            limited.post("/v1/speech", data={"text": "", "voice": "flite:rms"}).status_code
            for _ in range(3)
        ]
        assert codes == [422, 422, 422]  # refused for their text, but counted
        refused = limited.post("/v1/speech", data={"text": SENTENCE, "voice": "flite:rms"})
        assert refused.status_code == 429 and "requests a minute" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0


def test_a_token_guards_the_service(home: Path) -> None:
    settings = _settings(home, token="s3cret")
    with TestClient(create_app(settings, bank=load_bank(settings))) as guarded:
        assert guarded.get("/v1/voices").status_code == 401
        assert guarded.get("/healthz").status_code == 200
        ok = guarded.get("/v1/voices", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_serve_refuses_a_public_address_without_a_token(home: Path) -> None:
    from typer.testing import CliRunner

    from convoice.cli.root import app

    result = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--home", str(home)], env={"CONVOICE_SERVICE_TOKEN": ""}
    )
    assert result.exit_code == 2 and "without a token" in result.output


# -- batch ------------------------------------------------------------------------------


def test_a_batch_runs_as_a_job_with_progress_and_a_zip(client: TestClient) -> None:
    items = [
        {"text": SENTENCE, "voice": "flite:awb"},
        {"text": "The cat sleeps on the warm windowsill.", "voice": "spk_awb", "mode": "match"},
        {"text": SENTENCE, "voice": "spk_slt", "mode": "clone"},  # nothing can clone: fails alone
    ]
    started = client.post("/v1/speech/batch", json={"items": items, "format": "mp3"})
    assert started.status_code == 202
    job_id = started.json()["id"]
    assert client.get(f"/v1/jobs/{job_id}/result.zip").status_code in (200, 409)
    deadline = time.time() + 240
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] != "done":
        assert time.time() < deadline
        time.sleep(0.5)
    assert (job["done"], job["failed"], job["progress"]) == (2, 1, 1.0)
    assert job["items"][2]["code"] == "no_cloning_synthesiser"
    archive = zipfile.ZipFile(io.BytesIO(client.get(job["result"]).content))
    names = archive.namelist()
    assert names == ["001-flite_awb.mp3", "002-spk_awb.mp3", "results.json"]
    assert json.loads(archive.read("results.json"))[1]["kind"] == "matched"
    assert client.get("/v1/jobs/nope").status_code == 404


# -- the page in a real browser ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    import uvicorn

    port = free_port()
    app = create_app(_settings(home))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


def test_the_page_speaks_plays_downloads_and_finds_a_voice(
    server: str, tts_cache: Path, tmp_path: Path
) -> None:
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium: apt-get install chromium")
    upload = tmp_path / "me.ogg"
    upload.write_bytes(_convert(_wav_bytes(_speech("awb", 3, 41, tts_cache)), ".ogg", tmp_path))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 1400})
            page.goto(server)
            page.wait_for_selector("tr[data-voice='spk_awb']")
            assert "Talk rec_b" in page.inner_text("tr[data-voice='spk_awb']")  # attribution
            page.click("tr[data-voice='spk_awb'] button.pick")
            page.fill("#text", SENTENCE)
            page.select_option("#mode", "match")
            page.click("#speak-button")
            page.wait_for_selector("#speak-result:not([hidden])", timeout=120_000)
            assert "not a clone" in page.inner_text("#result-label")
            page.wait_for_function(
                "document.querySelector('#player').currentTime > 0.3", timeout=30_000
            )
            for link, suffix in (("#download-wav", ".wav"), ("#download-mp3", ".mp3")):
                with page.expect_download() as download:
                    page.click(link)
                saved = tmp_path / f"download{suffix}"
                download.value.save_as(saved)
                assert float(_probe(saved.read_bytes(), tmp_path, suffix)["duration"]) > 2.0
            page.set_input_files("#upload", str(upload))
            page.click("#match-button")
            page.wait_for_selector("#nearest li", timeout=60_000)
            found = page.eval_on_selector_all(
                "#nearest li", "items => items.map(i => i.dataset.voice)"
            )
            assert "spk_awb" in found[:2]
            page.fill("#batch-texts", f"{SENTENCE}\nThe second line is spoken too.")
            page.select_option("#batch-format", "mp3")
            page.click("#batch-button")  # the job's progress shows until its zip is ready
            page.wait_for_selector("#batch-zip:not([hidden])", timeout=180_000)
            assert "2 of 2 done" in page.inner_text("#batch-line")
            assert page.eval_on_selector("#batch-progress", "bar => bar.value") == 1
            with page.expect_download() as download:
                page.click("#batch-zip")
            archive = tmp_path / "batch.zip"
            download.value.save_as(archive)
            with zipfile.ZipFile(archive) as zipped:
                assert sum(n.endswith(".mp3") for n in zipped.namelist()) == 2
        finally:
            browser.close()


@pytest.mark.usefixtures("prefect_harness")
def test_the_engine_vits_clones_once_a_tts_run_exists(home: Path, tmp_path: Path) -> None:
    """A real (tiny, two-step) `convoice retrain tts` run on a copy of the store, then a clone."""
    import shutil

    from convoice.flows.tts import retrain_tts_flow

    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    report = retrain_tts_flow(dataset="v1", home=str(copy), steps=2, evaluate=False)
    settings = _settings(copy)
    found = syn.latest_vits(settings)
    assert found is not None and found.run_id == report.run_id and found.step == 2
    with TestClient(create_app(settings, bank=load_bank(settings))) as cloning:
        response = cloning.post(
            "/v1/speech", data={"text": SENTENCE, "voice": "spk_rms", "format": "json"}
        )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["kind"], result["synthesiser"]) == ("clone", "convoice-vits")
    assert report.run_id in result["label"] and result["details"]["step"] == 2
    assert result["similarity"] is not None and result["seconds"] > 0
