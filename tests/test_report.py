"""``convoice dataset report``: the HTML report of a small fake release (no models run)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_storage import absorb, make_recording
from typer.testing import CliRunner

from convoice.cli.ops import ops_app
from convoice.models import release_figures as calc
from convoice.records import Clip, ClipStatus, Provenance, Transcript, Word
from convoice.storage import Release, Store
from convoice.storage.schema import EMBEDDING_DIM

RATE = 16_000
PROVENANCE = Provenance(
    "convoice-test",
    {"asr": "whisper-base"},
    {"routing": {"min_speaker_confidence": 0.7, "min_transcript_confidence": 0.8}},
)
SECTIONS = ("hours", "confidence", "review", "reliability", "embeddings", "samples")
PNG = b"\x89PNG\r\n\x1a\n"


def _voice(pitch: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A few harmonics with vibrato and syllable-like loudness, over faint noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(pitch * (1 + 0.04 * np.sin(2 * np.pi * 5 * t))) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    return (0.2 * tone * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def build_release(root: Path) -> tuple[Store, Release]:
    """Three recordings, four speakers (clustered embeddings), two languages, every status."""
    store = Store(root)
    rng = np.random.default_rng(21)
    centres = rng.standard_normal((4, EMBEDDING_DIM))
    speakers = {f"spk_{n}": (centres[i], 110.0 + 55 * i) for i, n in enumerate("abcd")}
    plan = {"rec_1": ("en", ["spk_a", "spk_b"]), "rec_2": ("en", ["spk_a", "spk_c"]),
            "rec_3": ("de", ["spk_d", "spk_b"])}  # fmt: skip
    registry: dict = {}
    for recording_id, (language, who) in plan.items():
        clips, start = [], 0.0
        for i in range(6):
            speaker_id = who[i % 2]
            centre, pitch = speakers[speaker_id]
            vector = centre + 0.35 * rng.standard_normal(EMBEDDING_DIM)
            seconds = float(rng.uniform(1.2, 3.0))
            s_conf, t_conf = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.55, 1.0))
            reasons = tuple(
                r for r, bad in (("uncertain_speaker", s_conf < 0.7),
                                 ("low_transcript_confidence", t_conf < 0.8)) if bad
            )  # fmt: skip
            clip_id = f"{recording_id}_c{i}"
            words = (Word("guten" if language == "de" else "hello", 0.1, 0.5, t_conf),)
            clips.append(
                Clip(clip_id=clip_id, recording_id=recording_id, start=start,
                     end=start + seconds, recording_speaker=f"S{i % 2}",
                     embedding=(vector / np.linalg.norm(vector)).astype(np.float32),
                     speaker_id=speaker_id, speaker_confidence=s_conf,
                     transcript=Transcript(f"{words[0].word} number {i}", language, 0.98,
                                           words, -0.3, 1.2, 0.02),
                     transcript_confidence=t_conf,
                     status=ClipStatus.REVIEW if reasons else ClipStatus.ACCEPTED,
                     review_reasons=reasons,
                     audio_uri=store.write_flac(Store.clip_audio_key(recording_id, clip_id),
                                                _voice(pitch, seconds, rng), RATE))
            )  # fmt: skip
            start += seconds + 0.5
        touched = absorb(registry, recording_id, clips)
        store.commit_recording(make_recording(recording_id), clips, touched, PROVENANCE, "run-1")
    store.add_labels(
        [{"clip_id": "rec_2_c1", "field": "status", "value": "rejected", "labelled_by": "ann"}]
    )
    return store, store.release(tag="report-test", note="a fake release for the report test")


def test_report_figures() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    power = calc.spectrogram(np.sin(2 * np.pi * 1000 * t))
    assert power.shape[0] == 257 and int(power.mean(axis=1).argmax()) == 32  # 1 kHz bin
    bank = calc.mel_filterbank(RATE, n_mels=40)
    assert bank.shape == (40, 257) and bank.max() <= 1.0 and (bank.sum(axis=1) > 0).all()
    two = np.vstack([rng.normal(5, 0.1, (20, 8)), rng.normal(-5, 0.1, (20, 8))])
    projection = calc.pca_2d(two)
    assert projection.explained[0] > 0.9
    assert (np.sign(projection.xy[:20, 0]) != np.sign(projection.xy[20:, 0])).all()
    assert calc.pca_2d(two, max_points=10).xy.shape == (10, 2)


def test_report_of_a_release(tmp_path: Path) -> None:
    store, release = build_release(tmp_path / "store")
    assert release.n_clips == 18 and release.clips_by_status["rejected"] == 1
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        ops_app, ["report", "report-test", "--out", str(out), "--home", store.root]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    for text in ("spk_a", "spk_d", "uncertain_speaker", "Con Voice dataset v1 (report-test)"):
        assert text in page
    assert "<td>en</td><td>12</td>" in page and "<td>de</td><td>6</td>" in page
    assert "speaker_status" in page and "speaker_status" in result.output  # kinds, reliability

    images = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([^\"]+)", page)]
    assert len(images) == 5 + 3 * 4  # 2 hour charts, confidence, reasons, map; 3 per sample
    for data in images:
        assert data.startswith(PNG)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.width > 100 and image.height > 50
    sounds = re.findall(r"data:audio/flac;base64,([^\"]+)", page)
    assert len(sounds) == 4 and all(base64.b64decode(s).startswith(b"fLaC") for s in sounds)

    missing = CliRunner().invoke(ops_app, ["report", "v9", "--home", store.root])
    assert missing.exit_code == 2 and "no release 'v9'" in missing.output

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: the screenshot check did not run")
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
         f"--screenshot={shot}", "--window-size=1280,2400", out.as_uri()],
        capture_output=True, timeout=180, check=False,
    )  # fmt: skip
    assert shot.is_file(), "chromium made no screenshot"
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (2400, 1280)
    ink = (pixels.min(axis=2) < 200).mean()  # share of pixels that are not near white
    assert ink > 0.05 and pixels.std() > 20, f"the page looks blank (ink {ink:.3f})"
