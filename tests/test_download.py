"""Ingest against a real HTTP server on 127.0.0.1: listing, the licence gate, download.

Media are made with ffmpeg once per module and served by ``ThreadingHTTPServer``;
nothing leaves the machine.
"""

from __future__ import annotations

import functools
import json
import pickle
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from convoice.config import IngestSettings
from convoice.media.download import download_audio, remove_download, source_audio
from convoice.media.errors import IngestError
from convoice.media.listing import cc_search_url, expand_source
from convoice.media.sources import read_sources
from convoice.media.tracks import check_audio
from convoice.records import MediaItem, SkippedItem, Source
from convoice.synth.serve import free_port

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

SETTINGS = IngestSettings(socket_timeout_s=5.0, retries=0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits: Counter[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # yt-dlp closes early after sniffing a file: not an error here


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        self.server.hits[self.path] += 1
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def _make_media(root: Path) -> None:
    blue = "color=c=blue:s=160x120:d=3"
    _ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=3", "-f", "lavfi", "-i", blue, "-shortest",
            "-c:v", "libx264", "-c:a", "aac", str(root / "clip.mp4"))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", blue, "-c:v", "libx264", str(root / "silent.mp4"))
    card = "color=c=blue:s=160x120:d=9"  # an end card: the picture goes on after the sound
    _ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=3", "-f", "lavfi", "-i", card,
            "-c:v", "libx264", "-c:a", "aac", str(root / "end-card.mp4"))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=3", "-f", "lavfi", "-i", "sine=f=500:d=3",
            "-f", "lavfi", "-i", "color=c=blue:s=160x120:d=3", "-map", "2:v", "-map", "0:a",
            "-map", "1:a", "-c:v", "libx264", "-c:a", "aac", "-ac:a:1", "2",
            "-disposition:a:0", "0", "-disposition:a:1", "default",
            "-metadata:s:a:1", "language=rus", str(root / "two-tracks.mkv"))  # fmt: skip
    data = (root / "clip.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "page.html").write_text("<html><body><p>No media here.</p></body></html>")


def _feed(base: str) -> str:
    items = "".join(
        f'<item><title>{title}</title><enclosure url="{base}/{name}" type="video/mp4" '
        'length="1"/></item>'
        for title, name in (("First clip", "clip.mp4"), ("Gone", "gone.mp4"))
    )
    channel = f"<channel><title>Feed</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, _Server]]:
    """``(base_url, server)`` serving the test media; ``server.hits`` counts GETs by path."""
    root = tmp_path_factory.mktemp("www")
    _make_media(root)
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.hits = Counter()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    (root / "feed.xml").write_text(_feed(base))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield base, httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A local port nobody listens on: connections to it are refused."""
    return free_port()


def _one(source: Source, settings: IngestSettings = SETTINGS) -> MediaItem | SkippedItem:
    results = list(expand_source(source, settings, run_id="run-1"))
    assert len(results) == 1, results
    return results[0]


def _item(url: str) -> MediaItem:
    item = _one(Source(url, "CC-BY-4.0"))
    assert isinstance(item, MediaItem), item
    return item


def _probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    data: dict[str, Any] = json.loads(out)
    return data


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


# -- listing and the licence gate -----------------------------------------------------------


def test_declared_cc_direct_url_is_listed(server: tuple[str, _Server]) -> None:
    base, _ = server
    item = _item(f"{base}/clip.mp4")
    assert item.url == f"{base}/clip.mp4"
    assert item.source_url == f"{base}/clip.mp4"
    assert item.extractor == "Generic"
    assert item.title == "clip"
    assert item.uploader == base.removeprefix("http://")  # the host, as the generic gives none
    assert (item.license, item.license_raw, item.license_origin) == (
        "CC-BY-4.0",
        "CC-BY-4.0",
        "declared",
    )
    assert item.recording_id == _item(f"{base}/clip.mp4").recording_id  # stable


def test_no_declaration_is_skipped_not_creative_commons(server: tuple[str, _Server]) -> None:
    base, _ = server
    skipped = _one(Source(f"{base}/clip.mp4"))
    assert isinstance(skipped, SkippedItem)
    assert skipped.reason_code == "not_creative_commons"
    assert skipped.reason == "no licence reported by the platform and none declared"
    assert (skipped.run_id, skipped.title) == ("run-1", "clip")
    assert skipped.at.endswith("+00:00")


def test_a_batch_survives_404_and_unreachable_hosts(
    server: tuple[str, _Server], closed_port: int
) -> None:
    base, _ = server
    sources = [
        Source(f"{base}/missing.mp4", "CC-BY-4.0"),
        Source(f"http://127.0.0.1:{closed_port}/clip.mp4", "CC-BY-4.0"),
        Source(f"{base}/clip.mp4", "CC-BY-4.0"),
    ]
    results = [r for s in sources for r in expand_source(s, SETTINGS, run_id="run-1")]
    missing, refused, good = results
    assert isinstance(missing, SkippedItem) and missing.reason_code == "unreachable"
    assert "404" in missing.reason
    assert isinstance(refused, SkippedItem) and refused.reason_code == "unreachable"
    assert "refused" in refused.reason.lower()
    assert isinstance(good, MediaItem)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("notaurl://x", "unsupported_url"),
        ("not even a url", "unsupported_url"),
        ("{base}/page.html", "unsupported_url"),
    ],
)
def test_unhandled_urls_are_skipped_clearly(
    server: tuple[str, _Server], url: str, code: str
) -> None:
    skipped = _one(Source(url.format(base=server[0]), "CC-BY-4.0"))
    assert isinstance(skipped, SkippedItem)
    assert skipped.reason_code == code
    assert skipped.reason and len(skipped.reason) < 200
    assert "Traceback" not in skipped.reason and not skipped.reason.startswith("ERROR")


def test_a_feed_is_a_playlist_gated_entry_by_entry(server: tuple[str, _Server]) -> None:
    base, _ = server
    results = list(expand_source(Source(f"{base}/feed.xml", "CC-BY-SA-4.0"), SETTINGS))
    first, gone = results
    assert isinstance(first, MediaItem)
    assert (first.title, first.license, first.source_url) == (
        "First clip",
        "CC-BY-SA-4.0",
        f"{base}/feed.xml",
    )
    assert isinstance(gone, SkippedItem)
    assert (gone.reason_code, gone.title, gone.url) == ("unreachable", "Gone", f"{base}/gone.mp4")


def test_platform_licences_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a platform reports (here a stubbed YouTube playlist) drives the gate."""
    import yt_dlp

    def video(vid: str, license: str | None, duration: float) -> dict[str, Any]:
        url = f"https://www.youtube.com/watch?v={vid}"
        return {"id": vid, "title": vid, "extractor_key": "Youtube", "webpage_url": url,
                "uploader": "Chan", "uploader_url": "https://www.youtube.com/@chan",
                "upload_date": "20240102", "license": license, "duration": duration}  # fmt: skip

    playlist = {
        "_type": "playlist",
        "entries": [
            video("cc", "Creative Commons Attribution license (reuse allowed)", 60),
            video("std", "Standard YouTube License", 60),
            video("long", "Creative Commons Attribution license (reuse allowed)", 5 * 3600),
            {
                **video("live", "Creative Commons Attribution license (reuse allowed)", 0),
                "live_status": "is_live",
            },
            None,
        ],
    }
    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", lambda *a, **k: playlist)
    source = Source("https://www.youtube.com/playlist?list=PL1", "CC-BY-4.0")
    cc, std, long, live = expand_source(source, IngestSettings(), run_id="r")
    assert isinstance(cc, MediaItem)
    assert (cc.license, cc.license_origin, cc.media_id, cc.duration) == (
        "CC-BY-3.0",
        "platform",
        "cc",
        60.0,
    )
    assert (cc.uploader, cc.upload_date) == ("Chan", "20240102")
    assert isinstance(std, SkippedItem) and std.reason_code == "not_creative_commons"
    assert "cannot override" in std.reason
    assert isinstance(long, SkippedItem) and long.reason_code == "too_long"
    assert isinstance(live, SkippedItem) and live.reason_code == "unsupported_url"
    assert all(r.source_url == source.url for r in (cc, std, long, live))


def test_cc_search_url() -> None:
    assert cc_search_url("open source talks") == (
        "https://www.youtube.com/results?search_query=open+source+talks&sp=EgIwAQ%253D%253D"
    )


# -- download ---------------------------------------------------------------------------------


def test_download_is_16k_mono_wav_and_never_twice(
    server: tuple[str, _Server], tmp_path: Path
) -> None:
    base, httpd = server
    item = _item(f"{base}/clip.mp4")
    archive = tmp_path / "archive.txt"
    path = download_audio(item, tmp_path / "audio", SETTINGS, archive=archive)
    assert path == tmp_path / "audio" / f"{item.recording_id}.wav"
    stream = _probe(path)["streams"][0]
    assert (stream["codec_type"], stream["channels"]) == ("audio", 1)
    assert stream["sample_rate"] == "16000"
    assert 2.5 < check_audio(path, SETTINGS) < 3.5
    assert archive.read_text().strip()  # yt-dlp recorded it
    hits, mtime = httpd.hits["/clip.mp4"], path.stat().st_mtime_ns
    again = download_audio(item, tmp_path / "audio", SETTINGS, archive=archive)
    assert again == path
    assert httpd.hits["/clip.mp4"] == hits  # not a single request
    assert path.stat().st_mtime_ns == mtime
    assert _leftovers(tmp_path / "audio") == sorted([path.name, f"{path.stem}.track.txt"])


def test_archive_without_the_file_downloads_again(
    server: tuple[str, _Server], tmp_path: Path
) -> None:
    item = _item(f"{server[0]}/clip.mp4")
    archive = tmp_path / "archive.txt"
    path = download_audio(item, tmp_path, SETTINGS, archive=archive)
    path.unlink()
    assert download_audio(item, tmp_path, SETTINGS, archive=archive).exists()


def test_yt_dlp_is_made_once_per_thread_and_names_each_file(
    server: tuple[str, _Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing and downloading reuse the thread's yt-dlp; each download lands in its own
    directory (the kept instance takes the call's file name), and another thread makes its
    own."""
    import yt_dlp

    made: list[str] = []
    init = yt_dlp.YoutubeDL.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(threading.current_thread().name)
        init(self, *args, **kwargs)

    monkeypatch.setattr(yt_dlp.YoutubeDL, "__init__", counted)

    def work(n: int) -> list[Path]:
        items = [_item(f"{server[0]}/clip.mp4"), _item(f"{server[0]}/end-card.mp4")]
        return [download_audio(it, tmp_path / f"{n}-{i}", SETTINGS) for i, it in enumerate(items)]

    results: list[list[Path]] = []
    for n in range(2):  # a fresh thread each: its cache starts empty
        thread = threading.Thread(target=lambda n=n: results.append(work(n)), name=f"t{n}")
        thread.start()
        thread.join()
    assert made == ["t0", "t0", "t1", "t1"]  # listing + download, per thread
    paths = [p for ps in results for p in ps]
    assert [p.parent.name for p in paths] == ["0-0", "0-1", "1-0", "1-1"]
    assert all(_leftovers(p.parent) == sorted([p.name, f"{p.stem}.track.txt"]) for p in paths)


def test_a_thread_keeps_its_latest_yt_dlp_instances_only() -> None:
    from convoice.media import ytdlp

    def kept_in_new_thread() -> list[Any]:
        found: list[Any] = []

        def run() -> None:
            made = [ytdlp.kept(ytdlp.options(SETTINGS, socket_timeout=n)) for n in range(6)]
            again = ytdlp.kept(ytdlp.options(SETTINGS, socket_timeout=5))
            found.extend([made, again, list(ytdlp._kept.instances.values())])

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return found

    made, again, instances = kept_in_new_thread()
    assert again is made[5]
    assert instances == made[2:] and len(instances) == ytdlp.KEPT_PER_THREAD


def test_an_invalid_leftover_is_replaced(server: tuple[str, _Server], tmp_path: Path) -> None:
    item = _item(f"{server[0]}/clip.mp4")
    (tmp_path / f"{item.recording_id}.wav").write_bytes(b"RIFF garbage")
    path = download_audio(item, tmp_path, SETTINGS)
    assert _probe(path)["streams"][0]["sample_rate"] == "16000"


def test_truncated_media_is_corrupt_and_leaves_nothing(
    server: tuple[str, _Server], tmp_path: Path
) -> None:
    item = _item(f"{server[0]}/truncated.mp4")
    with pytest.raises(IngestError) as caught:
        download_audio(item, tmp_path / "audio", SETTINGS)
    assert caught.value.reason_code == "corrupt_media"
    assert "truncated or corrupt" in str(caught.value)
    assert _leftovers(tmp_path / "audio") == []


def test_picture_longer_than_sound_is_not_truncated(
    server: tuple[str, _Server], tmp_path: Path
) -> None:
    item = _item(f"{server[0]}/end-card.mp4")  # 9 s of picture, 3 s of sound
    path = download_audio(item, tmp_path, SETTINGS)
    assert 2.5 < check_audio(path, SETTINGS) < 3.5
    assert source_audio(path) == "track 1 of 1: aac 44100 Hz 1 ch"


def test_the_default_audio_track_is_taken_and_recorded(
    server: tuple[str, _Server], tmp_path: Path
) -> None:
    item = _item(f"{server[0]}/two-tracks.mkv")
    path = download_audio(item, tmp_path, SETTINGS)
    assert source_audio(path) == "track 2 of 2 (default, rus): aac 44100 Hz 2 ch"
    remove_download(path)
    assert _leftovers(tmp_path) == []


def test_video_without_audio_is_no_audio(server: tuple[str, _Server], tmp_path: Path) -> None:
    item = _item(f"{server[0]}/silent.mp4")
    with pytest.raises(IngestError) as caught:
        download_audio(item, tmp_path, SETTINGS)
    assert caught.value.reason_code == "no_audio"
    assert _leftovers(tmp_path) == []


def test_too_long_media_is_refused_after_download(
    server: tuple[str, _Server], tmp_path: Path
) -> None:
    item = _item(f"{server[0]}/clip.mp4")  # the generic extractor knows no duration
    with pytest.raises(IngestError) as caught:
        download_audio(item, tmp_path, IngestSettings(max_duration_s=1.0, retries=0))
    assert caught.value.reason_code == "too_long"
    assert _leftovers(tmp_path) == []


def test_download_network_errors_are_unreachable(
    server: tuple[str, _Server], closed_port: int, tmp_path: Path
) -> None:
    base, _ = server
    listed = _item(f"{base}/clip.mp4")
    for url in (f"{base}/vanished.mp4", f"http://127.0.0.1:{closed_port}/clip.mp4"):
        item = MediaItem(**{**listed.__dict__, "url": url, "media_id": url})
        with pytest.raises(IngestError) as caught:
            download_audio(item, tmp_path, SETTINGS)
        assert caught.value.reason_code == "unreachable"
    assert _leftovers(tmp_path) == []


def test_ingest_error_codes_are_checked() -> None:
    err = pickle.loads(pickle.dumps(IngestError("no_audio", "x: no audio stream")))
    assert (err.reason_code, str(err)) == ("no_audio", "x: no audio stream")
    with pytest.raises(ValueError, match="unknown reason code"):
        IngestError("oops", "x")


# -- sources CSV ------------------------------------------------------------------------------


def test_read_sources(tmp_path: Path) -> None:
    csv_path = tmp_path / "sources.csv"
    csv_path.write_text(
        "# operator list\n"
        "url,license,note\n"
        "\n"
        "https://v.example/1,CC-BY-4.0,first\n"
        "# https://v.example/skipped,CC-BY-4.0\n"
        "https://v.example/2,,\n"
        '"https://v.example/3?a=1,b",Creative Commons Attribution license (reuse allowed)\n'
    )
    read = read_sources(csv_path)
    assert read.sources == [
        Source("https://v.example/1", "CC-BY-4.0", "first", 4),
        Source("https://v.example/2", None, "", 6),
        Source(
            "https://v.example/3?a=1,b",
            "Creative Commons Attribution license (reuse allowed)",
            line=7,
        ),
    ]
    assert read.rejected == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("url,note\nhttps://v.example/1,x\n", r"sources\.csv, line 1: missing column 'license'"),
        ("link,licenses\nhttps://v.example/1,x\n", r"line 1: missing column 'license'"),
        ("address,license\nx,CC0\n", r"line 1: missing column 'url'"),
        ("\n# nothing\n", r"sources\.csv: no rows"),
    ],
)
def test_a_sources_file_that_cannot_be_read_says_why(
    tmp_path: Path, text: str, message: str
) -> None:
    from convoice.media.sources import SourcesError

    csv_path = tmp_path / "sources.csv"
    csv_path.write_text(text)
    with pytest.raises(SourcesError, match=message):
        read_sources(csv_path)


def test_check_audio_reads_the_wav_header_as_ffprobe_does(
    server: tuple[str, _Server], tmp_path: Path
) -> None:
    import numpy as np
    import soundfile

    path = download_audio(_item(f"{server[0]}/clip.mp4"), tmp_path / "audio", SETTINGS)
    want = float(_probe(path)["format"]["duration"])
    assert check_audio(path, SETTINGS) == pytest.approx(want, abs=1e-3)
    with pytest.raises(IngestError) as caught:
        check_audio(path, SETTINGS, expected_s=want + 2.0)
    assert caught.value.reason_code == "corrupt_media" and "truncated" in str(caught.value)
    soundfile.write(tmp_path / "8k.wav", np.zeros(8000, np.int16), 8000)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF garbage")
    for name, reason in [("8k.wav", "corrupt_media"), ("empty.wav", "no_audio"),
                         ("garbage.wav", "corrupt_media")]:  # fmt: skip
        with pytest.raises(IngestError) as caught:
            check_audio(tmp_path / name, SETTINGS)
        assert caught.value.reason_code == reason, name
