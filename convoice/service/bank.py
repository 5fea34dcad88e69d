"""The voice bank's I/O: a release read into bank voices, uploads decoded and checked, scores.

:func:`load_bank` reads one release (its clips, speakers and recordings) and
the shipped voices; :func:`check_upload` decodes an upload with ffmpeg and
applies the voice checks of :mod:`convoice.models.voicebank`; :func:`score`
measures synthesised speech (resemblyzer cosine to the reference, Whisper's
word error rate on the text).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.engines import loaders
from convoice.media import ffmpeg
from convoice.media.audio import read_encoded
from convoice.models import voicebank as vb
from convoice.models.metrics import wer_count
from convoice.records import Recording, Region, ReleaseClip, ReleaseSpeaker
from convoice.service.synthesisers import ShippedVoice, shipped_voices, speak_shipped

if TYPE_CHECKING:
    from convoice.config import Settings
    from convoice.models.voicematch import VoiceProfile
    from convoice.storage import Store

log = logging.getLogger(__name__)

RATE = 16_000
UPLOAD_TYPES = {".wav", ".mp3", ".m4a", ".ogg", ".opus", ".webm"}
PROFILE_SENTENCE = (
    "The quiet river carried small boats past the old stone bridge every morning,"
    " while the children waved from the bank."
)
_MODEL_LOCK = threading.Lock()  # encoder, Whisper, segmentation: one call at a time


class Refusal(ValueError):
    """A request is refused; ``status`` is the HTTP status, ``code`` the rule, ``extra`` advice."""

    def __init__(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, dict(extra or {})


@dataclass
class Bank:
    """The voices of one release (minus the opt-out list) and the shipped voices."""

    release: str  # "v3" or "" when the store has none
    voices: dict[str, vb.BankVoice]
    shipped: dict[str, ShippedVoice]
    clips: dict[str, tuple[str, str]]  # clip id -> (speaker id, audio uri) of the sample clips
    excluded: frozenset[str]
    store: Store | None = None
    profiles: dict[str, VoiceProfile] = field(default_factory=dict)

    def get(self, voice_id: str) -> vb.BankVoice:
        """The voice, or Refusal 403 (opted out) / 404 (unknown)."""
        if voice_id in self.excluded:
            raise Refusal(
                403, "excluded_voice", f"voice {voice_id!r} is excluded from the bank (opt-out)"
            )
        voice = self.voices.get(voice_id)
        if voice is None:
            raise Refusal(404, "unknown_voice", f"no voice {voice_id!r} in the bank")
        return voice


def embed(samples: np.ndarray) -> np.ndarray:
    """One unit-norm resemblyzer embedding of 16 kHz speech."""
    from convoice.models.embed import embed_regions

    with _MODEL_LOCK:
        out = embed_regions(loaders.voice_encoder(), samples, [Region(0.0, len(samples) / RATE)])
    return out[0]


def _attributions(recordings: Sequence[Recording]) -> dict[str, vb.Attribution]:
    return {
        r.recording_id: vb.Attribution(
            r.recording_id,
            r.title or "",
            r.url or "",
            r.uploader or "",
            r.license or "",
            r.attribution or "",
        )
        for r in recordings
    }


def dataset_voices(
    clips: Sequence[ReleaseClip],
    speakers: Sequence[ReleaseSpeaker],
    recordings: Sequence[Recording],
    settings: Settings,
) -> tuple[list[vb.BankVoice], dict[str, tuple[str, str]]]:
    """Speakers with at least ``[service] min_clips`` clips whose speaker label is sure
    (accepted, or a person's; a clip whose transcript is unsure still counts), with samples."""
    sources = _attributions(recordings)
    accepted: dict[str, list[ReleaseClip]] = {}
    for clip in clips:
        if clip.speaker_sure and clip.speaker_id:
            accepted.setdefault(clip.speaker_id, []).append(clip)
    voices, samples = [], {}
    for speaker in speakers:
        own = accepted.get(speaker.speaker_id, [])
        if len(own) < settings.service.min_clips:
            continue
        own.sort(key=lambda c: (-(c.speaker_confidence or 0.0), c.clip_id))
        picked = own[: settings.service.sample_clips]
        for clip in picked:
            samples[clip.clip_id] = (speaker.speaker_id, clip.audio_uri)
        recs = sorted({c.recording_id for c in own})
        voices.append(
            vb.BankVoice(
                voice_id=speaker.speaker_id,
                kind=vb.DATASET,
                name=speaker.name or speaker.speaker_id,
                languages=tuple(sorted({c.language for c in own if c.language})),
                hours=sum(c.duration for c in own) / 3600.0,
                n_clips=len(own),
                sample_clips=tuple(c.clip_id for c in picked),
                attributions=tuple(sources[r] for r in recs if r in sources),
                embedding=np.asarray(speaker.centroid, np.float32),
            )
        )
    return voices, samples


@functools.cache
def shipped_embedding(voice: ShippedVoice) -> np.ndarray:
    """The embedding of a shipped voice speaking :data:`PROFILE_SENTENCE` (cached on disk)."""
    digest = hashlib.sha256(f"bank-1|{voice}|{PROFILE_SENTENCE}".encode()).hexdigest()[:20]
    cached = loaders.cache_dir() / "voicebank" / f"{digest}.npy"
    if cached.is_file():
        return np.asarray(np.load(cached), np.float32)
    speech = speak_shipped(voice, PROFILE_SENTENCE)
    vector = embed(to_rate(speech.samples, speech.rate))
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.save(cached, vector)
    return vector


def to_rate(samples: np.ndarray, rate: int, target: int = RATE) -> np.ndarray:
    from convoice.training.tts_export import resample

    return np.asarray(resample(np.asarray(samples, np.float32), rate, target), np.float32)


def shipped_bank_voices() -> list[vb.BankVoice]:
    return [
        vb.BankVoice(
            voice_id=v.voice_id,
            kind=vb.SHIPPED,
            name=v.name,
            languages=(v.language,),
            synthesiser=v.engine,
            licence=v.licence,
            embedding=shipped_embedding(v),
        )
        for v in shipped_voices()
    ]


def load_bank(settings: Settings, release: str | None = None) -> Bank:
    """The bank of ``release`` (default: the latest; none: shipped voices only)."""
    from convoice.storage import Store
    from convoice.storage.releases import read_release_table
    from convoice.storage.rows import (
        recording_records,
        release_clip_records,
        release_speaker_records,
    )

    excluded = vb.normalise_exclude(settings.service.exclude)
    store = Store.open(settings)
    releases = store.releases()
    chosen = store.resolve(release) if release else (releases[-1] if releases else None)
    voices: list[vb.BankVoice] = []
    samples: dict[str, tuple[str, str]] = {}
    if chosen is not None:
        columns = [
            "clip_id",
            "recording_id",
            "speaker_id",
            "status",
            "duration",
            "language",
            "speaker_confidence",
            "audio_uri",
            "speaker_status",  # not in releases made before per-kind statuses
        ]
        table = read_release_table(store.location, chosen.version, "clips")
        clips = release_clip_records(table.select([c for c in columns if c in table.column_names]))
        speakers = release_speaker_records(
            read_release_table(store.location, chosen.version, "speakers")
        )
        recordings = recording_records(
            read_release_table(store.location, chosen.version, "recordings")
        )
        speakers = [s for s in speakers if s.speaker_id not in excluded]
        voices, samples = dataset_voices(clips, speakers, recordings, settings)
    voices += shipped_bank_voices()
    shipped = {v.voice_id: v for v in shipped_voices()}
    return Bank(
        chosen.name if chosen else "",
        {v.voice_id: v for v in voices},
        shipped,
        samples,
        excluded,
        store,
    )


def clip_audio(bank: Bank, clip_id: str) -> tuple[bytes, str]:
    """The FLAC bytes of a sample clip and its speaker; Refusal when it is not playable."""
    found = bank.clips.get(clip_id)
    if found is None or bank.store is None:
        raise Refusal(404, "unknown_clip", f"no sample clip {clip_id!r} in the bank")
    speaker, uri = found
    bank.get(speaker)  # an opted-out speaker's clips are not played either
    return bank.store.read_audio(uri), speaker


def voice_audio(bank: Bank, voice_id: str) -> np.ndarray:
    """16 kHz reference audio of a bank voice: its sample clips, or the shipped voice speaking."""
    voice = bank.get(voice_id)
    if voice.kind == vb.SHIPPED:
        speech = speak_shipped(bank.shipped[voice_id], PROFILE_SENTENCE)
        return to_rate(speech.samples, speech.rate)
    pieces = []
    for clip_id in voice.sample_clips:
        data, rate = read_encoded(clip_audio(bank, clip_id)[0])
        pieces.append(to_rate(data if data.ndim == 1 else data[:, 0], int(rate)))
    return np.concatenate(pieces)


# -- uploads ------------------------------------------------------------------


def decode_upload(data: bytes, filename: str, settings: Settings) -> np.ndarray:
    """16 kHz mono samples of an upload; Refusal for a wrong type, size or undecodable file."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in UPLOAD_TYPES:
        allowed = ", ".join(sorted(UPLOAD_TYPES))
        raise Refusal(415, "bad_file_type", f"{filename!r}: upload one of {allowed}")
    limit = settings.service.max_upload_mb * 1_000_000
    if len(data) > limit:
        raise Refusal(
            413,
            "too_large",
            f"the upload is {len(data) / 1e6:.1f} MB; the limit is"
            f" {settings.service.max_upload_mb:g} MB",
        )
    with tempfile.TemporaryDirectory(prefix="convoice-upload-") as tmp:  # deleted on return
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        args = [
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-t",
            "600",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-",
        ]
        proc = ffmpeg.run("ffmpeg", args, timeout=120)
    samples = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if proc.returncode != 0 or samples.size == 0:
        raise Refusal(
            415, "undecodable", f"{filename!r} is not audio that can be decoded ({suffix} expected)"
        )
    return samples


def speech_regions(samples: np.ndarray) -> list[Region]:
    """Voice activity (Silero VAD, shipped in faster-whisper)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    found = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=300))
    return [Region(s["start"] / RATE, s["end"] / RATE) for s in found]


def speech_windows(samples: np.ndarray, regions: list[Region], window_s: float = 2.0) -> np.ndarray:
    """Embeddings of consecutive 2 s windows of the speech regions, shape (n, 256)."""
    from convoice.models.embed import embed_regions

    windows = []
    for r in regions:
        start = r.start
        while r.end - start >= window_s * 0.75:
            windows.append(Region(start, min(start + window_s, r.end)))
            start += window_s
    if not windows:
        return np.zeros((0, 256), np.float32)
    with _MODEL_LOCK:
        return embed_regions(loaders.voice_encoder(), samples, windows)


def local_speaker_seconds(samples: np.ndarray) -> list[list[float]]:
    """Per 10 s chunk of speech, the seconds each local speaker of the engine's pyannote
    segmentation model talks (the diarization front end of ingestion)."""
    from convoice.models.diarize import CHUNK_S, detect_speech, segment_chunks, segmenter_from_model
    from convoice.models.segmentation import plan_chunks, rms_envelope

    model = segmenter_from_model(loaders.segmentation_model())  # in torch, as before
    speech = detect_speech(samples)
    envelope = rms_envelope(samples, RATE)
    chunks = plan_chunks(speech, len(samples) / RATE, envelope, max_s=CHUNK_S)
    with _MODEL_LOCK:
        segs = segment_chunks(model, samples, chunks, batch_size=8)
    return [(seg.activity.sum(axis=0) * seg.frame_step).tolist() for seg in segs]


@dataclass(frozen=True)
class Reference:
    """A checked reference voice: its speech and its embedding."""

    samples: np.ndarray  # 16 kHz, speech regions only
    embedding: np.ndarray
    seconds: float
    speech_seconds: float


def check_reference(samples: np.ndarray, settings: Settings) -> Reference:
    """The voice checks: 3-60 s, speech present, one voice (Refusal 422 otherwise)."""
    service = settings.service
    seconds = len(samples) / RATE
    try:
        vb.check_duration(seconds, service.min_upload_s, service.max_upload_s)
        regions = speech_regions(samples)
        speech = sum(r.end - r.start for r in regions)
        vb.check_speech(speech)
        vb.check_one_voice(speech_windows(samples, regions), local_speaker_seconds(samples))
    except vb.VoiceCheckError as err:
        raise Refusal(422, err.code, str(err)) from err
    voiced = np.concatenate([samples[int(r.start * RATE) : int(r.end * RATE)] for r in regions])
    return Reference(voiced, embed(voiced), seconds, speech)


def keep_upload(data: bytes, filename: str, settings: Settings) -> Path:
    """Store an upload the user chose to keep (never in a dataset): ``<keep_dir>/<sha256><ext>``."""
    folder = Path(settings.service.keep_dir or Path(settings.home) / "service" / "kept")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest()[:24] + Path(filename).suffix.lower())
    path.write_bytes(data)
    return path


# -- scoring ------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    similarity: float  # resemblyzer cosine of the result to the reference embedding
    wer: float  # Whisper's word error rate on the requested text
    heard: str  # what Whisper heard


def score(
    samples16: np.ndarray, reference: np.ndarray, text: str, language: str, settings: Settings
) -> Scores:
    """Speaker similarity to ``reference`` and Whisper's WER of 16 kHz speech against ``text``."""
    from convoice.models.asr import AsrOptions, transcribe_clips

    similarity = vb.cosine(embed(samples16), reference)
    asr = settings.asr
    whisper = loaders.whisper_model(asr.model, asr.compute_type, asr.cpu_threads)
    region = Region(0.0, len(samples16) / RATE)
    with _MODEL_LOCK:
        heard = transcribe_clips(whisper, samples16, [region], AsrOptions(1, 1, language))[0]
    text_heard = heard.text if heard is not None else ""
    return Scores(round(similarity, 4), round(wer_count(text, text_heard).wer, 4), text_heard)
