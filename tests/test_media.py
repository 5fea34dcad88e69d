"""Media as it comes, ingested by URL through ``convoice ingest``, as an operator runs it.

Every case is made here with ffmpeg from a few seconds of the small corpus's
speech, served on 127.0.0.1, and ingested in ONE command run (one store): the
valid files must all be labelled, the truncated and corrupt ones rejected with a
reason, and the log must show each expected skip as one WARNING line and no
traceback. Two more runs reuse the files: a real crash (a store that cannot be
written) keeps its traceback and exits 1; a sources file of 100 rows, 20 of them
bad, skips exactly those 20 with their line numbers.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_flows import write_sources

from convoice.storage import Store
from convoice.storage.schema import SKIPPED_SCHEMA
from convoice.synth.media_files import make_music, make_silence
from convoice.synth.recordings import pyannote_sample
from convoice.synth.serve import serve_directory

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

SPEECH_S = 7.0
LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"
VIDEO = ["-f", "lavfi", "-i", "color=c=black:s=160x120:r=10"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]

# name -> ffmpeg arguments after "-i speech.wav" (input 0), or a special maker below
VALID: dict[str, list[str]] = {
    # the picture runs 6 s past the sound (an end card): the audio track decides
    "end-card.mp4": [*VIDEO, "-t", f"{SPEECH_S + 6}", "-map", "1:v", "-map", "0:a", *X264,
                     "-c:a", "aac"],
    "short-picture.mp4": ["-f", "lavfi", "-i", "color=c=black:s=160x120:r=10:d=2",
                          "-map", "1:v", "-map", "0:a", *X264, "-c:a", "aac"],
    "audio.m4a": ["-c:a", "aac"],
    "audio.opus": ["-c:a", "libopus"],
    "audio.webm": ["-c:a", "libopus"],
    "audio.mp3": ["-c:a", "libmp3lame"],
    "audio.flac": ["-c:a", "flac"],
    "stereo-44k.wav": ["-ac", "2", "-ar", "44100"],
    "telephone-8k.wav": ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000",
                         "-c:a", "pcm_mulaw"],
    # headerless telephone audio, as Asterisk's sound files come: the extension names it
    "telephone.ulaw": ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-f", "mulaw"],
    "telephone.ul": ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-f", "mulaw"],
    "telephone.alaw": ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-f", "alaw"],
    "telephone.gsm": ["-ar", "8000", "-c:a", "libgsm", "-f", "gsm"],
    "wideband.sln16": ["-ar", "16000", "-f", "s16le"],
    "stereo-48k.mp4": [*VIDEO, "-t", f"{SPEECH_S}", "-map", "1:v", "-map", "0:a", *X264,
                       "-ac", "2", "-ar", "48000", "-c:a", "aac"],
    "surround-5.1.mkv": [*VIDEO, "-t", f"{SPEECH_S}", "-map", "1:v", "-map", "0:a", *X264,
                         "-af", "pan=5.1|FL=0.2*c0|FR=0.2*c0|FC=c0|LFE=0*c0|BL=0.1*c0|BR=0.1*c0",
                         "-ar", "48000", "-c:a", "aac"],
    # music first (not default), the speech second and marked default: take the default
    "two-tracks.mkv": ["-i", "{music}", *VIDEO, "-t", f"{SPEECH_S}", "-map", "2:v",
                       "-map", "1:a", "-map", "0:a", *X264, "-c:a", "aac",
                       "-disposition:a:0", "0", "-disposition:a:1", "default",
                       "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=rus"],
    # frames at irregular times (some dropped): variable frame rate
    "vfr.mp4": ["-f", "lavfi", "-i", "testsrc=s=160x120:r=25", "-t", f"{SPEECH_S}",
                "-map", "1:v", "-map", "0:a", "-vf", "select='lt(mod(n,7),3)+lt(n,20)'",
                "-fps_mode", "vfr", *X264, "-c:a", "aac"],
}  # fmt: skip
REJECTED = {
    "truncated-faststart.mp4": "corrupt_media",  # moov first: the header says 7 s, 4 s decode
    "truncated.mp4": "corrupt_media",  # moov last: not readable at all
    "truncated.flac": "corrupt_media",
    "truncated.wav": "corrupt_media",
    "truncated.opus": "corrupt_media",  # Ogg: no end-of-stream page
    "truncated.webm": "corrupt_media",  # Matroska: the track's DURATION says more
    "garbage.mp4": "corrupt_media",
    "silence.mp4": "no_speech",
    "music.mp4": "no_speech",
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def make_matrix(speech_source: Path, root: Path) -> None:
    """Every case of :data:`VALID` and :data:`REJECTED` in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    speech, music = root / "speech.src.wav", root / "music.src.wav"
    _ffmpeg("-i", str(speech_source), "-t", f"{SPEECH_S}", "-ac", "1", "-ar", "16000", str(speech))
    make_music(root / "music.src.wav", SPEECH_S, seed=3)
    for name, args in VALID.items():
        _ffmpeg("-i", str(speech), *[a.format(music=music) for a in args], str(root / name))
    faststart = root / "truncated-faststart.mp4"
    _ffmpeg("-i", str(speech), *VIDEO, "-t", f"{SPEECH_S}", "-map", "1:v", "-map", "0:a", *X264,
            "-c:a", "aac", "-movflags", "+faststart", str(faststart))  # fmt: skip
    _cut(faststart, 0.55)
    _ffmpeg("-i", str(speech), *VIDEO, "-t", f"{SPEECH_S}", "-map", "1:v", "-map", "0:a", *X264,
            "-c:a", "aac", str(root / "truncated.mp4"))  # fmt: skip
    _cut(root / "truncated.mp4", 0.5)
    shutil.copy(root / "audio.flac", root / "truncated.flac")
    _cut(root / "truncated.flac", 0.5)
    for name in ("wav", "opus", "webm"):
        shutil.copy(
            root / ("stereo-44k.wav" if name == "wav" else f"audio.{name}"),
            root / f"truncated.{name}",
        )
        _cut(root / f"truncated.{name}", 0.5)
    (root / "garbage.mp4").write_bytes(random.Random(5).randbytes(50_000))
    make_silence(root / "silence.mp4", 5.0)
    make_music(root / "music.mp4", 6.0)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def ingest(sources: Path, home: Path) -> Run:
    """``convoice ingest --sources`` in its own process, as an operator runs it."""
    cmd = [sys.executable, "-m", "convoice.cli.root", "ingest", "--sources", str(sources)]
    env = {**os.environ, "COLUMNS": "200", "PREFECT_LOGGING_LEVEL": "INFO"}
    done = subprocess.run(
        [*cmd, "--home", str(home)], capture_output=True, text=True, timeout=1200, env=env
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, small_corpus) -> Iterator[tuple[Path, str]]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("matrix")
    make_matrix(small_corpus.episodes[0].media_path, root)
    with serve_directory(root) as base:
        yield root, base


@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory: pytest.TempPathFactory, served) -> tuple[Path, Run]:  # type: ignore[no-untyped-def]
    _, base = served
    home = tmp_path_factory.mktemp("matrix-home")
    names = [*VALID, *REJECTED]
    csv_path = tmp_path_factory.mktemp("matrix-sources") / "matrix.csv"
    sources = write_sources(csv_path, [(base + n, "CC-BY-4.0") for n in names])
    return home, ingest(sources, home)


def test_every_valid_file_is_labelled_and_every_broken_one_rejected(matrix_run) -> None:  # type: ignore[no-untyped-def]
    home, run = matrix_run
    assert run.code == 0, run.stderr[-3000:]
    store = Store(str(home))
    recordings = {r["url"].rsplit("/", 1)[-1]: r for r in store.recordings().to_pylist()}
    skipped = {s["url"].rsplit("/", 1)[-1]: s for s in store.skipped().to_pylist()}
    assert {n: skipped[n]["reason"] for n in VALID if n in skipped} == {}  # 0 valid rejected
    assert set(recordings) == set(VALID)
    assert {n: skipped[n]["reason_code"] for n in REJECTED} == REJECTED
    assert all(skipped[n]["reason"] for n in REJECTED)
    clips = store.clips().to_pylist()
    with_clips = dict.fromkeys(recordings, 0)
    by_id = {r["recording_id"]: name for name, r in recordings.items()}
    for clip in clips:
        with_clips[by_id[clip["recording_id"]]] += 1
    assert all(count >= 1 for count in with_clips.values()), with_clips
    for name, rec in recordings.items():  # the audio track's own length, not the picture's
        assert abs(rec["duration"] - SPEECH_S) < 0.3, (name, rec["duration"])
    assert recordings["two-tracks.mkv"]["source_audio"].startswith("track 2 of 2 (default, rus)")
    assert "6 ch" in recordings["surround-5.1.mkv"]["source_audio"]
    for name in ("telephone-8k.wav", "telephone.ulaw", "telephone.ul", "telephone.alaw"):
        assert "8000 Hz 1 ch" in recordings[name]["source_audio"], name
    assert "truncated" in skipped["truncated-faststart.mp4"]["reason"]


def test_expected_skips_are_one_warning_line_each_and_no_traceback(matrix_run) -> None:  # type: ignore[no-untyped-def]
    _, run = matrix_run
    log = run.stderr
    assert "Traceback" not in log and "Traceback" not in run.stdout
    warnings = [line for line in log.splitlines() if "| WARNING |" in line and "skipped" in line]
    assert len(warnings) == len(REJECTED), "\n".join(warnings)
    for name, code in REJECTED.items():
        [line] = [w for w in warnings if w.split(" skipped ", 1)[1].startswith("http")
                  and f"/{name}: " in w]  # fmt: skip
        assert f": {code}: " in line
    assert not [line for line in log.splitlines() if re.search(r"\| ERROR +\|", line)]
    assert re.search(r"no_speech\s+│\s+2", run.stdout)  # the table groups skips by reason
    corrupt = sum(code == "corrupt_media" for code in REJECTED.values())
    assert re.search(rf"corrupt_media\s+│\s+{corrupt}\b", run.stdout)


def test_local_files_and_folders_are_ingested_by_path(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A sources file naming local media: a folder (with a space in its name, a subfolder
    and a file that is not media), a bare file name beside the sources file, a ``file://``
    URL; a path where nothing is is a bad row. A path given on the command line without a
    licence is refused with a hint."""
    root, _ = served
    folder = tmp_path / "our talks"
    (folder / "day 2").mkdir(parents=True)
    shutil.copy(root / "audio.flac", folder / "one.flac")
    shutil.copy(root / "audio.m4a", folder / "day 2" / "two.m4a")
    (folder / "programme.txt").write_text("not media")
    shutil.copy(root / "audio.mp3", tmp_path / "three.mp3")
    shutil.copy(root / "telephone.ulaw", tmp_path / "four.ulaw")
    sources = tmp_path / "local.csv"
    sources.write_text(
        "url;license;note;author;page\n"
        "./our talks;CC BY 4.0;the conference;Ada Lovelace;https://example.org/talks\n"
        "three.mp3;CC0;;;\n"
        f"{(tmp_path / 'four.ulaw').as_uri()};CC-BY-SA-4.0;;;\n"
        "./missing.mp4;CC-BY-4.0;;;\n",
        encoding="utf-8",
    )
    home = tmp_path / "home"
    run = ingest(sources, home)
    assert run.code == 0, run.stderr[-3000:]
    store = Store(str(home))
    recordings = {Path(r["url"]).name: r for r in store.recordings().to_pylist()}
    assert set(recordings) == {"one.flac", "two.m4a", "three.mp3", "four.ulaw"}
    assert recordings["two.m4a"]["url"] == (folder / "day 2" / "two.m4a").as_uri()
    assert recordings["one.flac"]["license"] == "CC-BY-4.0"
    assert recordings["three.mp3"]["license"] == "CC0-1.0"
    assert recordings["one.flac"]["attribution"] == (
        '"one" by Ada Lovelace (https://example.org/talks), licensed under CC BY 4.0 '
        "(https://creativecommons.org/licenses/by/4.0/)"
    )  # the operator's page, not the local path
    assert recordings["one.flac"]["url"] == (folder / "one.flac").as_uri()
    assert (
        f'"three" ({(tmp_path / "three.mp3").as_uri()}), marked with'
        in (recordings["three.mp3"]["attribution"])
    )
    assert all(abs(r["duration"] - SPEECH_S) < 0.3 for r in recordings.values()), recordings
    skipped = store.skipped().to_pylist()
    assert [(s["line"], s["reason_code"]) for s in skipped] == [(5, "unreachable")]
    assert f"no such file or folder: {tmp_path / 'missing.mp4'}" in skipped[0]["reason"]
    assert "Traceback" not in run.stderr

    release = subprocess.run(
        [sys.executable, "-m", "convoice.cli.root", "dataset", "release", "--home", str(home)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert release.returncode == 0, release.stderr[-3000:]
    assert "warning: 2 recording(s) attributed to a local file:// path" in " ".join(
        release.stdout.split()
    )  # three.mp3 and four.ulaw: no page

    again = ingest(sources, home)  # a re-run labels nothing twice
    assert again.code == 0 and "0 recordings labelled" in " ".join(again.stdout.split())
    assert len(Store(str(home)).recordings()) == 4

    cmd = [sys.executable, "-m", "convoice.cli.root", "ingest", "three.mp3", "--home", str(home)]
    bare = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = " ".join(bare.stdout.split())
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert "not_creative_commons" in out and "declare it in a sources file" in out.replace("│ ", "")


def test_a_real_crash_keeps_its_traceback_and_exits_1(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, base = served
    home = tmp_path / "home"
    home.mkdir()
    (home / "audio").write_text("a file where the store's audio folder should be")
    sources = write_sources(tmp_path / "s.csv", [(base + "audio.flac", "CC0-1.0"),
                                            (base + "silence.mp4", "CC0-1.0")])  # fmt: skip
    run = ingest(sources, home)
    assert run.code == 1, run.stderr[-3000:]
    assert "Traceback" in run.stderr and "NotADirectoryError" in run.stderr
    assert re.search(r"\| ERROR +\|.* crashed on .*/audio\.flac", run.stderr)
    assert "labelling_failed" in run.stdout and "1 item(s) crashed" in run.stdout
    assert re.search(r"\| WARNING \|.* skipped .*/silence\.mp4: no_speech: ", run.stderr)


def _hundred_rows(base: str, fresh: str) -> tuple[str, dict[int, str]]:
    """A sources file as operators write them: 80 good rows and 20 bad ones."""
    files = ["audio.flac", "audio.mp3", "audio.m4a", fresh]
    licences = [LICENCE_URL, "CC BY 4.0", "CC-BY-4.0"]  # a URL, as written, an SPDX id
    rows = ["\ufeffnote;licence;url", ""]  # BOM, semicolons, columns in another order, blank
    bad: dict[int, str] = {}
    spoilers = [
        ("not_creative_commons", "All rights reserved", None),
        ("unknown_licence", "CC BY 5.0", None),
        ("malformed_url", "CC-BY-4.0", "www.example.org/video.mp4"),
        ("duplicate_row", None, None),
    ]
    good = 0
    while good < 80 or len(bad) < 20:
        line = len(rows) + 1
        if len(bad) < 20 and line % 5 == 0:
            code, licence, url = spoilers[len(bad) % 4]
            if code == "duplicate_row":
                rows.append(rows[-1] if rows[-1] else rows[-2])
            else:
                rows.append(f"bad {line};{licence};{url or base + files[0]}")
            bad[line] = code
        else:
            note = f"take {good}" if good >= 4 else "first"
            rows.append(f"{note};{licences[good % 3]};{base}{files[good % 4]}")
            good += 1
    return "\n".join(rows) + "\n", bad


def test_a_sources_file_of_100_rows_with_20_bad_ones(  # type: ignore[no-untyped-def]
    served, matrix_run, tmp_path: Path
) -> None:
    root, base = served
    shutil.copy(root / "audio.opus", root / "fresh.opus")  # one file the store has not seen
    text, bad = _hundred_rows(base, "fresh.opus")
    assert text.count("\n") == 102 and len(bad) == 20
    sources = tmp_path / "sources.csv"
    sources.write_text(text, encoding="utf-8")
    home, _ = matrix_run
    run = ingest(sources, home)
    assert run.code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "1 recordings labelled" in run.stdout and "79 already done" in run.stdout
    [fresh] = [r for r in Store(str(home)).recordings().to_pylist() if "/fresh." in r["url"]]
    assert (fresh["license"], fresh["license_raw"]) == ("CC-BY-4.0", LICENCE_URL)  # both kept
    run_rows = [
        r for r in Store(str(home)).tables.read("skipped", SKIPPED_SCHEMA).to_pylist()
        if r["source_url"] == str(sources)
    ]  # fmt: skip
    assert {r["line"]: r["reason_code"] for r in run_rows} == bad
    assert all(r["reason"] for r in run_rows)
    for line in bad:
        assert re.search(rf"\| WARNING \|.* skipped {re.escape(str(sources))}, line {line}: ",
                         run.stderr)  # fmt: skip


def test_speech_found_block_by_block_is_the_speech_found_at_once() -> None:
    import soundfile

    from convoice.models.diarize import detect_speech

    wav, _ = pyannote_sample()  # real conversation, 30 s
    audio, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000
    whole = detect_speech(audio)
    blocks = detect_speech(audio, block_s=7.0)  # four boundaries, some inside speech
    total = sum(r.duration for r in whole)
    assert abs(sum(r.duration for r in blocks) - total) < 0.05 * total
    assert abs(len(blocks) - len(whole)) <= 2
    assert all(a.end <= b.start for a, b in itertools.pairwise(blocks))


def test_transcription_gets_each_clips_samples_and_nothing_else() -> None:
    import numpy as np

    from convoice.media.audio import Audio
    from convoice.media.clips import clips_only
    from convoice.models.diarize import ClipRegion, Segmentation
    from convoice.records import Region

    samples = np.arange(16000 * 60, dtype=np.float32)  # a minute, every sample its own value
    regions = [Region(1.25, 3.5), Region(10.0, 17.9), Region(40.003, 41.5)]
    clips = [ClipRegion(i, r, False) for i, r in enumerate(regions)]
    seg = Segmentation([], [], [], [], [], clips)
    audio, moved = clips_only(Audio(samples, 16000), seg)
    assert len(audio.samples) < 12 * 16000
    for before, after in zip(clips, moved.clips, strict=True):
        old = samples[int(before.region.start * 16000) : int(before.region.end * 16000)]
        new = audio.samples[int(after.region.start * 16000) : int(after.region.end * 16000)]
        assert np.array_equal(old, new) and after.turn == before.turn
