"""Ingest: read the operator's sources, list and licence-gate media, download audio.

Everything goes through yt-dlp's Python API, so a video, a playlist, a channel, a search
page or a direct media link are handled alike. Every failure of one item becomes a
:class:`~convoice.records.SkippedItem` (listing) or an :class:`IngestError`
(download) with a machine-readable ``reason_code``: one bad item never stops a batch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

from convoice.config import IngestSettings
from convoice.models.licence import decide_licence, licence_problem
from convoice.records import SAMPLE_RATE, MediaItem, SkippedItem, SkipReason, Source

log = logging.getLogger(__name__)

REASON_CODES = frozenset(SkipReason)
_MAX_DEPTH = 3  # channel -> tab -> playlist -> video
_YOUTUBE_CC_FILTER = "EgIwAQ%253D%253D"


class IngestError(Exception):
    """One item could not be ingested; ``reason_code`` is one of :data:`REASON_CODES`."""

    def __init__(self, reason_code: str, message: str) -> None:
        if reason_code not in REASON_CODES:
            raise ValueError(f"unknown reason code {reason_code!r}")
        super().__init__(message)
        self.reason_code = reason_code
        self.reason = message

    def __reduce__(self) -> tuple[type[IngestError], tuple[str, str]]:
        return (type(self), (self.reason_code, self.reason))  # picklable across processes


def cc_search_url(query: str) -> str:
    """A YouTube search restricted to Creative Commons videos.

    ``sp=EgIwAQ%253D%253D`` is YouTube's "Features: Creative Commons" search filter (the
    protobuf ``EgIwAQ==``, URL-encoded twice as YouTube itself writes it). Give the result
    to :func:`expand_source`; every entry is still licence-gated one by one.
    """
    search = quote_plus(query.strip())
    return f"https://www.youtube.com/results?search_query={search}&sp={_YOUTUBE_CC_FILTER}"


# -- sources -----------------------------------------------------------------------------

SOURCE_COLUMNS = ("url", "license", "note")
"""The columns of a sources file without a header row, in that order."""
_COLUMN_ALIASES = {"licence": "license", "link": "url", "notes": "note"}
_DELIMITERS = (",", ";", "\t")


class SourcesError(ValueError):
    """The sources file as a whole cannot be read (no such columns, not text): bad usage."""


@dataclass(frozen=True)
class SourcesFile:
    """An operator's sources file, row by row: what to ingest and the rows that cannot be."""

    sources: list[Source]
    rejected: list[SkippedItem]  # one per bad row, with its line number and reason


def read_sources(path: str | os.PathLike[str], run_id: str = "") -> SourcesFile:
    """Read an operator's sources file; every row stands alone.

    The file is UTF-8 (a BOM is fine), comma-, semicolon- or tab-separated (seen
    from its first row). A header row names the columns (``url``, ``license`` or
    ``licence``, ``note``; any order, other columns ignored); without one, the
    columns are ``url,license[,note]``. Blank lines and lines starting with ``#``
    are ignored; a blank licence means "none declared" (the platform must then
    report one). A bad row (an empty or malformed URL, a licence that is not
    Creative Commons or is unknown, a repeat of an earlier row) becomes a
    rejected :class:`SkippedItem` with its line number; the other rows still run.

    Raises:
        SourcesError: the file is not UTF-8 text, has no rows, or its header has no
            ``url`` column.
    """
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SourcesError(f"{name}: not UTF-8 text (byte {err.start}: {err.reason})") from err
    rows = _rows(text)
    if not rows:
        raise SourcesError(f"{name}: no rows (expected a header with 'url' and 'license')")
    columns, rows = _columns(name, rows)
    result = SourcesFile([], [])
    seen: dict[tuple[str, str, str], int] = {}
    for line, cells in rows:
        row = {col: cell.strip() for col, cell in zip(columns, cells, strict=False)}
        url, declared, note = row.get("url", ""), row.get("license", ""), row.get("note", "")
        problem = _row_problem(url, declared) or _repeat(seen, (url, declared, note), line)
        if problem is None:
            result.sources.append(Source(url, declared or None, note, line))
            continue
        code, reason = problem
        skipped = SkippedItem(str(path), url, note, code, reason, run_id, _now(), line)
        result.rejected.append(skipped)
    return result


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """The (line number, cells) of every row that is not blank or a comment."""
    lines = text.splitlines()
    first = next((s for s in lines if s.strip() and not s.lstrip().startswith("#")), "")
    delimiter = max(_DELIMITERS, key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if any(cell.strip() for cell in cells) and not cells[0].lstrip().startswith("#"):
            rows.append((line, cells))
    return rows


def _columns(
    name: str, rows: list[tuple[int, list[str]]]
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The column names (from the header, or the default order) and the data rows."""
    line, first = rows[0]
    header = [_COLUMN_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in first]
    if "url" in header:
        if "license" not in header:
            raise SourcesError(
                f"{name}, line {line}: missing column 'license' (found: {', '.join(header)})"
            )
        return header, rows[1:]
    if _url_problem(first[0].strip()) is None:
        return list(SOURCE_COLUMNS), rows  # no header: url,license[,note]
    raise SourcesError(
        f"{name}, line {line}: missing column 'url' (found: {', '.join(header)}); the first "
        "row must name the columns (url, license[, note]) or be a row with a URL"
    )


def _row_problem(url: str, declared: str) -> tuple[str, str] | None:
    """Why one row cannot be ingested (reason code, reason), or None."""
    problem = _url_problem(url)
    if problem is not None:
        return SkipReason.MALFORMED_URL, problem
    if declared:
        return licence_problem(declared)
    return None


def _url_problem(url: str) -> str | None:
    """What is wrong with a URL as written, or None (yt-dlp judges the rest)."""
    if not url:
        return "empty url"
    if any(c.isspace() for c in url):
        return f"malformed url {url!r}: it contains a space"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as err:
        return f"malformed url {url!r}: {err}"
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme):
        return f"malformed url {url!r}: no scheme (write http:// or https://)"
    if parts.scheme in ("http", "https", "ftp") and not parts.hostname:
        return f"malformed url {url!r}: no host"
    return None


def _repeat(
    seen: dict[tuple[str, str, str], int], key: tuple[str, str, str], line: int
) -> tuple[str, str] | None:
    if key in seen:
        return SkipReason.DUPLICATE_ROW, f"the same row as line {seen[key]}"
    seen[key] = line
    return None


# -- yt-dlp plumbing ---------------------------------------------------------------------


class _YtdlpLogger:
    """Routes yt-dlp's output to logging: errors are reported by us, classified."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = warning = error = debug


def _options(settings: IngestSettings, **stage: Any) -> dict[str, Any]:
    """The engine's yt-dlp options, then the stage's, then the operator's on top."""
    base: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtdlpLogger(),
        "socket_timeout": settings.socket_timeout_s,
        "retries": settings.retries,
        "fragment_retries": settings.retries,
        "extractor_retries": settings.retries,
        "format": "bestaudio/best",
    }
    return {**base, **stage, **settings.ytdlp_options}


def _short(text: str, limit: int = 300) -> str:
    text = re.sub(r"^(ERROR: )?(\[[\w:]+\] )?([^\s:]+: )?", "", " ".join(text.split()))
    text = re.sub(r" \(caused by .*\)$", "", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _classify(err: BaseException) -> tuple[str, str]:
    """A reason code and a short message for an exception raised by yt-dlp."""
    from yt_dlp.networking.exceptions import HTTPError, NoSupportingHandlers, TransportError
    from yt_dlp.utils import (
        ContentTooShortError,
        DownloadError,
        ExtractorError,
        PostProcessingError,
        UnsupportedError,
    )

    cause: BaseException = err
    if isinstance(err, DownloadError) and err.exc_info and err.exc_info[1] is not None:
        cause = err.exc_info[1]
    while isinstance(cause, ExtractorError) and cause.cause is not None:
        if isinstance(cause, UnsupportedError):
            break
        cause = cause.cause
    if isinstance(cause, UnsupportedError | NoSupportingHandlers):
        return SkipReason.UNSUPPORTED_URL, _short(str(cause))
    if isinstance(cause, HTTPError):
        return SkipReason.UNREACHABLE, f"HTTP error {cause.status} ({cause.reason})"
    if isinstance(cause, TransportError):
        errno = re.search(r"\[Errno -?\d+\]\s*([^'\"()]+)", str(cause))
        return (
            SkipReason.UNREACHABLE,
            f"cannot connect: {errno[1].strip() if errno else _short(str(cause))}",
        )
    if isinstance(cause, ContentTooShortError):
        return SkipReason.DOWNLOAD_FAILED, "the transfer ended before the whole file arrived"
    if isinstance(cause, PostProcessingError):
        return SkipReason.CORRUPT_MEDIA, _short(str(cause))
    if isinstance(cause, ExtractorError) and "is not a valid URL" in str(cause):
        return SkipReason.UNSUPPORTED_URL, _short(str(cause))
    return SkipReason.DOWNLOAD_FAILED, _short(str(cause)) or type(cause).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- listing and the licence gate -----------------------------------------------------------


def expand_source(
    source: Source, settings: IngestSettings, run_id: str = ""
) -> Iterator[MediaItem | SkippedItem]:
    """List the media behind ``source`` and licence-gate each one.

    A video, playlist, channel or search URL is listed flat, then each entry is
    extracted on its own (``download=False``). Each yields a :class:`MediaItem` that
    passed the gate, or a :class:`SkippedItem` with a reason code: a non-CC licence,
    an unsupported or unreachable URL, an extractor failure, media longer than
    ``settings.max_duration_s``. Never raises for one bad entry.
    """
    from yt_dlp import YoutubeDL

    with YoutubeDL(_options(settings, extract_flat="in_playlist")) as ydl:
        try:
            info = ydl.extract_info(source.url, download=False)
        except Exception as err:  # one bad source must not stop a batch
            yield _skip_error(source, source.url, "", err, run_id)
            return
        yield from _walk(ydl, source, dict(info or {}), settings, run_id, 0)


def _walk(
    ydl: Any,
    source: Source,
    info: dict[str, Any],
    settings: IngestSettings,
    run_id: str,
    depth: int,
) -> Iterator[MediaItem | SkippedItem]:
    if info.get("_type") not in ("playlist", "multi_video"):
        yield _gate(source, info, settings, run_id)
        return
    for entry in info.get("entries") or []:
        if not entry:
            continue
        url = entry.get("url") or entry.get("webpage_url") or ""
        if depth >= _MAX_DEPTH:
            reason = f"nested deeper than {_MAX_DEPTH} playlists"
            yield _skipped(source, url, entry, SkipReason.UNSUPPORTED_URL, reason, run_id)
        elif entry.get("_type") not in ("url", "url_transparent"):
            yield from _walk(ydl, source, entry, settings, run_id, depth + 1)  # already full
        else:
            try:
                full = ydl.process_ie_result(dict(entry), download=False)
            except Exception as err:  # each entry fails on its own
                yield _skip_error(source, url, entry.get("title") or "", err, run_id)
                continue
            yield from _walk(ydl, source, dict(full or {}), settings, run_id, depth + 1)


def _gate(
    source: Source, info: dict[str, Any], settings: IngestSettings, run_id: str
) -> MediaItem | SkippedItem:
    """The licence and duration checks for one fully extracted entry."""
    url = info.get("webpage_url") or info.get("original_url") or source.url
    decision = decide_licence(info.get("license"), source.declared_license)
    if not decision.accepted:
        return _skipped(source, url, info, SkipReason.NOT_CREATIVE_COMMONS, decision.reason, run_id)
    if info.get("live_status") in ("is_live", "is_upcoming") or info.get("is_live"):
        reason = "a live or upcoming stream, not a recording"
        return _skipped(source, url, info, SkipReason.UNSUPPORTED_URL, reason, run_id)
    duration = float(info["duration"]) if info.get("duration") else None
    if duration is not None and duration > settings.max_duration_s:
        reason = f"{duration:.0f} s is longer than the {settings.max_duration_s:.0f} s limit"
        return _skipped(source, url, info, SkipReason.TOO_LONG, reason, run_id)
    extractor = str(info.get("extractor_key") or info.get("extractor") or "unknown")
    host = str(info.get("webpage_url_domain") or urlsplit(url).netloc)
    return MediaItem(
        url=url,
        source_url=source.url,
        extractor=extractor,
        # the generic extractor's id is the file name: the URL keeps hosts apart
        media_id=url if extractor == "Generic" else str(info.get("id") or url),
        title=str(info.get("title") or ""),
        uploader=str(info.get("uploader") or info.get("channel") or host),
        uploader_url=str(info.get("uploader_url") or info.get("channel_url") or ""),
        upload_date=str(info.get("upload_date") or ""),
        license=decision.license,
        license_raw=decision.license_raw,
        license_origin=decision.origin,
        duration=duration,
    )


def _skipped(
    source: Source, url: str, info: dict[str, Any], code: str, reason: str, run_id: str
) -> SkippedItem:
    title = str(info.get("title") or "")
    return SkippedItem(source.url, url, title, code, reason, run_id, _now(), source.line)


def _skip_error(
    source: Source, url: str, title: str, err: BaseException, run_id: str
) -> SkippedItem:
    code, reason = _classify(err)
    log.debug("cannot list %s: %s (%s)", url, reason, code)
    return SkippedItem(source.url, url, title, code, reason, run_id, _now(), source.line)


# -- download --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioTrack:
    """The audio stream of a downloaded file that the engine decodes, and why that one."""

    index: int  # ffprobe's stream index in the file
    position: int  # 1-based among the file's audio streams
    count: int  # audio streams in the file
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # the stream's own duration; None when the file does not say
    language: str = ""
    title: str = ""
    default: bool = False

    def describe(self) -> str:
        """``"track 2 of 3 (default, eng, 'Original'): aac 48000 Hz 6 ch"``."""
        marks = ["default"] if self.default and self.count > 1 else []
        marks += [self.language] if self.language else []
        marks += [repr(self.title)] if self.title else []
        which = f"track {self.position} of {self.count}"
        which += f" ({', '.join(marks)})" if marks else ""
        return f"{which}: {self.codec} {self.sample_rate} Hz {self.channels} ch"


def download_audio(
    item: MediaItem, dest_dir: Path, settings: IngestSettings, archive: Path | None = None
) -> Path:
    """Download ``item`` as 16 kHz mono WAV into ``dest_dir/<recording_id>.wav``.

    A valid file already there is returned as is: a re-run downloads nothing twice.
    ``archive`` is passed to yt-dlp as its ``download_archive``. yt-dlp fetches the
    media as it comes; the engine picks its audio track (:func:`choose_audio_track`),
    decodes it with ffmpeg and checks it against that track's own duration, in a
    temporary directory: no partial file is ever left under the final name. Which
    track was taken is written next to the WAV (:func:`source_audio`).

    Raises:
        IngestError: ``unreachable``, ``unsupported_url``, ``download_failed``,
            ``corrupt_media``, ``no_audio`` or ``too_long``.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{item.recording_id}.wav"
    if dest.exists():
        try:
            check_audio(dest, settings)
            return dest
        except IngestError as err:
            log.warning("replacing invalid %s: %s", dest, err)
            dest.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{item.recording_id}.", suffix=".part", dir=dest_dir))
    try:
        original = _fetch(item, tmp, settings, archive)
        track = choose_audio_track(original)
        wav = extract_audio(original, track, tmp / "audio.wav")
        check_audio(wav, settings, track.duration)
        _track_file(dest).write_text(track.describe(), encoding="utf-8")
        os.replace(wav, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def source_audio(wav: Path) -> str:
    """Which track of the original media ``wav`` was made from ("" when not recorded)."""
    path = _track_file(wav)
    return path.read_text(encoding="utf-8").strip() if path.exists() else ""


def remove_download(wav: Path) -> None:
    """Delete a downloaded WAV and its track note (once the store holds the recording)."""
    wav.unlink(missing_ok=True)
    _track_file(wav).unlink(missing_ok=True)


def _track_file(wav: Path) -> Path:
    return wav.with_suffix(".track.txt")


def _fetch(item: MediaItem, tmp: Path, settings: IngestSettings, archive: Path | None) -> Path:
    """Run yt-dlp into ``tmp``; the media file it downloaded, as the site serves it."""
    from yt_dlp import YoutubeDL

    opts = _options(settings, noplaylist=True)
    opts.update(outtmpl={"default": str(tmp / "media.%(ext)s")}, paths={})  # ours, always
    for use_archive in (True, False) if archive is not None else (False,):
        if use_archive:
            opts["download_archive"] = str(archive)
        else:
            opts.pop("download_archive", None)
        try:
            with YoutubeDL(opts) as ydl:
                ydl.extract_info(item.url, download=True)
        except Exception as err:
            code, reason = _classify(err)
            raise IngestError(code, reason) from err
        found = sorted(p for p in tmp.iterdir() if p.is_file() and not p.name.endswith(".part"))
        if found:
            return found[0]
        # the archive lists it but the file is gone: the caller still needs the audio
    raise IngestError(SkipReason.DOWNLOAD_FAILED, "yt-dlp produced no media file")


def choose_audio_track(path: Path) -> AudioTrack:
    """The audio stream to label: the one marked default, else the original, else the first.

    Raises:
        IngestError: ``corrupt_media`` when ffprobe cannot read the file, ``no_audio``
            when it has no audio stream.
    """
    probe = _ffprobe(path)
    if probe is None:
        raise IngestError(
            SkipReason.CORRUPT_MEDIA,
            "the downloaded file is not valid media (truncated or corrupt)",
        )
    if "ogg" in str(probe.get("format", {}).get("format_name", "")) and not _ogg_ends(path):
        raise IngestError(  # an Ogg file cut short is only an Ogg file that ends early otherwise
            SkipReason.CORRUPT_MEDIA, "truncated: the Ogg stream has no end-of-stream page"
        )
    streams = probe.get("streams", [])
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not audio:
        raise IngestError(SkipReason.NO_AUDIO, "the media has no audio stream")
    marked = [s for s in audio if (s.get("disposition") or {}).get("default")]
    original = [s for s in audio if (s.get("disposition") or {}).get("original")]
    chosen = (marked or original or audio)[0]
    tags = {str(k).lower(): str(v) for k, v in (chosen.get("tags") or {}).items()}
    duration = _wav_declared_seconds(path) or _stream_duration(chosen, tags)
    if duration is None and not any(s.get("codec_type") == "video" for s in streams):
        duration = _float(probe.get("format", {}).get("duration"))  # audio only: the same
    return AudioTrack(
        index=int(chosen.get("index", 0)),
        position=audio.index(chosen) + 1,
        count=len(audio),
        codec=str(chosen.get("codec_name") or "?"),
        sample_rate=int(chosen.get("sample_rate") or 0),
        channels=int(chosen.get("channels") or 0),
        duration=duration,
        language=tags.get("language", "") if tags.get("language") != "und" else "",
        title=tags.get("title", ""),
        default=bool((chosen.get("disposition") or {}).get("default")),
    )


def _float(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if number > 0 else None


def _stream_duration(stream: dict[str, Any], tags: dict[str, str]) -> float | None:
    """A stream's own duration: its header's, else Matroska's ``DURATION`` tag."""
    own = _float(stream.get("duration"))
    if own is not None:
        return own
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tags.get("duration", "").strip())
    if match is None:
        return None
    return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) or None


def _ogg_ends(path: Path) -> bool:
    """Whether an Ogg file's last page carries the end-of-stream flag (RFC 3533, 6).

    Every complete Ogg stream ends with such a page; a download cut short ends
    with a page without it, or with part of a page.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - 65_536))  # one page is at most 65,307 bytes
        tail = handle.read()
    start = tail.rfind(b"OggS\x00")
    if start < 0 or start + 27 > len(tail):
        return False
    header_type, segments = tail[start + 5], tail[start + 26]
    body = sum(tail[start + 27 : start + 27 + segments])
    complete = start + 27 + segments + body == len(tail)
    return bool(header_type & 0x04) and complete


def _wav_declared_seconds(path: Path) -> float | None:
    """The length a WAV's header declares (ffprobe guesses it from the file's size instead)."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif chunk == b"data":  # 0 or 0xFFFFFFFF: written by a stream that did not know
            known = byte_rate > 0 and 0 < size < 0xFFFFFFFF
            return size / byte_rate if known else None
        pos += 8 + size + (size & 1)
    return None


def extract_audio(path: Path, track: AudioTrack, wav: Path) -> Path:
    """Decode ``track`` of ``path`` into a 16 kHz mono 16-bit WAV (channels mixed down).

    Raises:
        IngestError: ``corrupt_media`` when ffmpeg cannot decode it.
    """
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-map", f"0:{track.index}",
           "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
           str(wav)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=7200, check=False)
    except FileNotFoundError as err:
        raise RuntimeError("ffmpeg is not installed; run `make setup`") from err
    if done.returncode != 0 or not wav.exists():
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise IngestError(
            SkipReason.CORRUPT_MEDIA, f"ffmpeg cannot decode its audio: {_short(detail)}"
        )
    return wav


def _ffprobe(path: Path) -> dict[str, Any] | None:
    """ffprobe's streams and format of ``path``, or None when it cannot read the file."""
    cmd = ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError as err:
        raise RuntimeError("ffprobe is not installed (it ships with ffmpeg)") from err
    if done.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(done.stdout or "{}")
    if not data.get("streams"):
        return None
    return data


def check_audio(path: Path, settings: IngestSettings, expected_s: float | None = None) -> float:
    """Verify a WAV is 16 kHz mono, not empty, not truncated, not too long; its duration.

    ``expected_s`` is the duration the source's audio track declares: a WAV
    shorter than that (by more than 1 s or 5 %) was decoded from a truncated file.

    Raises:
        IngestError: ``corrupt_media``, ``no_audio`` or ``too_long``.
    """
    probe = _ffprobe(path)
    if probe is None:
        raise IngestError(SkipReason.CORRUPT_MEDIA, f"{path.name}: ffprobe cannot read it")
    audio = [s for s in probe.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise IngestError(SkipReason.NO_AUDIO, f"{path.name}: no audio stream")
    rate, channels = int(audio[0].get("sample_rate") or 0), int(audio[0].get("channels") or 0)
    if (rate, channels) != (SAMPLE_RATE, 1):
        raise IngestError(SkipReason.CORRUPT_MEDIA, f"{path.name}: {rate} Hz, {channels} channels")
    duration = float(probe.get("format", {}).get("duration") or 0.0)
    if duration <= 0:
        raise IngestError(SkipReason.NO_AUDIO, "the audio track decodes to no samples")
    if duration > settings.max_duration_s:
        limit = settings.max_duration_s
        raise IngestError(
            SkipReason.TOO_LONG, f"{duration:.0f} s of audio is over the {limit:.0f} s limit"
        )
    if expected_s and duration < expected_s - max(1.0, 0.05 * expected_s):
        raise IngestError(
            SkipReason.CORRUPT_MEDIA,
            f"truncated: {duration:.1f} s of audio decoded of the {expected_s:.1f} s "
            "its audio track declares",
        )
    return duration
