"""Real recordings with ground truth that installed packages ship (pyannote.audio, pocketsphinx)."""

from __future__ import annotations

from pathlib import Path

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")


class SampleDataMissing(FileNotFoundError):
    """Sample data that a package ships is not installed."""


def pyannote_sample() -> tuple[Path, Path]:
    """The real two-speaker recording that ships in the pyannote.audio wheel: (wav, rttm)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("pyannote.audio")
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SampleDataMissing("pyannote.audio is not installed: pip install pyannote.audio")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sample"
    wav, rttm = folder / "sample.wav", folder / "sample.rttm"
    if not (wav.is_file() and rttm.is_file()):
        raise SampleDataMissing(
            f"{folder} lacks sample.wav or sample.rttm: reinstall pyannote.audio"
        )
    return wav, rttm


def librivox_samples(
    folder: str | Path = LIBRIVOX_DIR, listing_name: str = "transcription"
) -> list[tuple[Path, str]]:
    """Real read speech (LibriVox, public domain) with transcripts, from pocketsphinx-testdata.

    Returns ``(wav, transcript)`` pairs; the WAVs are 16 kHz mono, the
    transcripts lower-case words without punctuation.
    """
    folder = Path(folder)
    listing = folder / listing_name
    if not listing.is_file():
        raise SampleDataMissing(
            f"{listing} not found: install the Debian package pocketsphinx-testdata"
        )
    out: list[tuple[Path, str]] = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.endswith(")") or "(" not in line:
            continue
        text, _, utt = line[:-1].rpartition("(")
        words = [w for w in text.split() if w not in {"<s>", "</s>"}]
        wav = folder / f"{utt.strip()}.wav"
        if not wav.is_file():
            raise SampleDataMissing(f"{wav} is missing: reinstall pocketsphinx-testdata")
        out.append((wav, " ".join(words)))
    if not out:
        raise SampleDataMissing(f"{listing} lists no utterances")
    return out
