"""A full disk stops an ingest with where space ran out, loses nothing, and the same command
resumes (:mod:`convoice.orchestration.disk_space`).

The disk is a real one: a small tmpfs mounted for the test (root, as on these machines
and in CI). Without the right to mount, the tests that need one are skipped, saying so.
"""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoice.media.errors import IngestError
from convoice.media.tracks import choose_audio_track, extract_audio
from convoice.orchestration.disk_space import (
    LOW_FREE_BYTES,
    DiskFull,
    Space,
    low_space_warning,
    out_of_space,
    says_out_of_space,
)
from convoice.records import SkipReason
from convoice.storage import Store
from convoice.synth.serve import write_sources_csv


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs at ``tmp_path/disk`` (grown with :func:`_grow`), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small disk here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _grow(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)


def _fill(mount: Path) -> None:
    """Leave no free byte on ``mount``."""
    with (mount / "filler").open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise


def test_a_full_disk_is_told_apart_from_other_errors(tmp_path: Path) -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("commit failed") from inner
    except RuntimeError as err:
        assert says_out_of_space(err)  # through the chain
    deltalake_like = OSError(
        "Generic LocalFileSystem error\n No space left on device (os error 28)"
    )
    assert says_out_of_space(deltalake_like)
    assert not says_out_of_space(ValueError("bad value"))
    assert not says_out_of_space(OSError(errno.ENOENT, "No such file"))
    # a plain bug with plenty of space where the run writes is no full disk
    assert out_of_space(ValueError("bad value"), {"store": str(tmp_path)}) is None
    full = out_of_space(deltalake_like, {"store": str(tmp_path), "remote": "s3://b/k"})
    assert isinstance(full, DiskFull) and [s.what for s in full.spaces] == ["store"]
    assert "run the same command again" in str(full)
    again = pickle.loads(pickle.dumps(full))  # crosses from a Dask worker
    assert str(again) == str(full)
    low = DiskFull([Space("store", "/a", 10**9), Space("downloads", "/b", LOW_FREE_BYTES - 1)], "x")
    assert "/b (downloads)" in str(low) and "/a" not in str(low)  # names the full one


def test_a_write_error_where_the_disk_is_full_is_a_full_disk(small_disk: Path) -> None:
    _fill(small_disk)
    torch_like = RuntimeError("PytorchStreamWriter failed writing file data.pkl: file write failed")
    full = out_of_space(torch_like, {"downloads": str(small_disk / "not" / "made")})
    assert isinstance(full, DiskFull)
    assert f"{small_disk / 'not' / 'made'} (downloads) has 0.0 MB free" in str(full)
    roomy = str(Path(__file__).resolve().parent)  # the repository's disk
    warning = low_space_warning({"store": str(small_disk), "temporary files": roomy})
    assert warning is not None and f"{small_disk} (store) has 0.0 MB free" in warning
    assert "temporary files" not in warning  # only the places short of space
    assert low_space_warning({"temporary files": roomy}) is None


def test_ffmpeg_on_a_full_disk_is_no_corrupt_media(small_corpus, small_disk: Path) -> None:  # type: ignore[no-untyped-def]
    media = small_corpus.episodes[0].media_path
    track = choose_audio_track(media)
    assert extract_audio(media, track, small_disk / "fits.wav").stat().st_size > 0
    _fill(small_disk)
    with pytest.raises(OSError) as raised:
        extract_audio(media, track, small_disk / "full.wav")
    assert raised.value.errno == errno.ENOSPC
    assert not isinstance(raised.value, IngestError)


def test_an_ingest_on_a_full_disk_stops_and_the_same_command_resumes(  # type: ignore[no-untyped-def]
    tmp_path: Path, small_corpus, served_corpus, small_disk: Path
) -> None:
    home = small_disk / "home"  # 2 MB: one recording's clips at most
    sources = write_sources_csv(small_corpus, served_corpus, tmp_path / "sources.csv")
    cmd = [sys.executable, "-m", "convoice.cli.root", "ingest", "--sources", str(sources),
           "--home", str(home)]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    log = first.stdout + first.stderr
    assert first.returncode == 3, log
    assert "stopped: out of disk space" in log and f"{home} (store) has" in log, log
    assert f"low disk space before the run: {home} (store) has" in log, log  # said first
    assert "Traceback" not in log and "crashed" not in log, log
    store = Store(str(home))
    done_before = store.done_recording_ids()
    assert len(done_before) < 3
    failed = [r for r in store.skipped().to_pylist() if r["reason_code"] != SkipReason.NO_SPEECH]
    assert failed == []  # no item blamed for the disk

    _grow(small_disk)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log
    assert f"{len(done_before)} already done" in log, log
    ids = store.clips()["clip_id"].to_pylist()
    assert len(ids) == len(set(ids)), "a clip written twice"
    assert len(store.done_recording_ids()) == 3

    # any command: a release on a full disk is one line and exit code 3, and leaves no version
    _fill(small_disk)
    release = [sys.executable, "-m", "convoice.cli.root", "dataset", "release", "--home", str(home)]
    full = subprocess.run(release, capture_output=True, text=True, timeout=300)
    assert full.returncode == 3, full.stdout + full.stderr
    assert "out of disk space" in full.stdout and "Traceback" not in full.stdout + full.stderr
    assert store.releases() == []
    (small_disk / "filler").unlink()
    done = subprocess.run(release, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r.version for r in store.releases()] == [1]
