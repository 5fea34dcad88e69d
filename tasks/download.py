"""Ingest: read the operator's sources, list and licence-gate media, download audio.

Everything goes through yt-dlp's Python API, so a video, a playlist, a channel, a search
page or a direct media link are handled alike. Every failure of one item becomes a
:class:`~convoice.models.records.SkippedItem` (listing) or an :class:`IngestError`
(download) with a machine-readable ``reason_code``: one bad item never stops a batch.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

from convoice.config import IngestSettings
from convoice.models.licence import canonical_license, decide_licence
from convoice.models.records import MediaItem, SkippedItem, Source

log = logging.getLogger(__name__)

REASON_CODES = frozenset(
    {"not_creative_commons", "unsupported_url", "unreachable", "download_failed",
     "corrupt_media", "too_long", "no_audio", "no_speech", "labelling_failed"}
)  # fmt: skip
SAMPLE_RATE = 16_000
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


def read_sources(path: str | os.PathLike[str]) -> list[Source]:
    """Read an operator's CSV: a header with ``url`` and ``license`` (and optional ``note``).

    Blank lines and lines starting with ``#`` are ignored; a blank licence means "none
    declared" (the platform must then report one).

    Raises:
        ValueError: naming the file and line, for a missing column, an empty URL or a
            declared licence that is not Creative Commons.
    """
    name = Path(path).name
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        sources: list[Source] = []
        for row in reader:
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            where = f"{name}, line {reader.line_num}"
            if header is None:
                header = [cell.strip().lower() for cell in row]
                missing = [col for col in ("url", "license") if col not in header]
                if missing:
                    found = ", ".join(header)
                    raise ValueError(f"{where}: missing column {missing[0]!r} (found: {found})")
                continue
            sources.append(_source_row(dict(zip(header, row, strict=False)), where))
    if header is None:
        raise ValueError(f"{name}: no header row (expected at least 'url' and 'license')")
    return sources


def _source_row(row: dict[str, str], where: str) -> Source:
    url = (row.get("url") or "").strip()
    if not url:
        raise ValueError(f"{where}: empty url")
    declared = (row.get("license") or "").strip()
    if declared and not canonical_license(declared):
        raise ValueError(
            f"{where}: licence {declared!r} is not a Creative Commons licence "
            "(use e.g. CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0, or leave it blank)"
        )
    return Source(url=url, declared_license=declared or None, note=(row.get("note") or "").strip())


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
        return "unsupported_url", _short(str(cause))
    if isinstance(cause, HTTPError):
        return "unreachable", f"HTTP error {cause.status} ({cause.reason})"
    if isinstance(cause, TransportError):
        errno = re.search(r"\[Errno -?\d+\]\s*([^'\"()]+)", str(cause))
        return "unreachable", f"cannot connect: {errno[1].strip() if errno else _short(str(cause))}"
    if isinstance(cause, ContentTooShortError):
        return "download_failed", "the transfer ended before the whole file arrived"
    if isinstance(cause, PostProcessingError):
        return "corrupt_media", _short(str(cause))
    if isinstance(cause, ExtractorError) and "is not a valid URL" in str(cause):
        return "unsupported_url", _short(str(cause))
    return "download_failed", _short(str(cause)) or type(cause).__name__


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
            yield _skipped(source, url, entry, "unsupported_url", reason, run_id)
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
        return _skipped(source, url, info, "not_creative_commons", decision.reason, run_id)
    if info.get("live_status") in ("is_live", "is_upcoming") or info.get("is_live"):
        reason = "a live or upcoming stream, not a recording"
        return _skipped(source, url, info, "unsupported_url", reason, run_id)
    duration = float(info["duration"]) if info.get("duration") else None
    if duration is not None and duration > settings.max_duration_s:
        reason = f"{duration:.0f} s is longer than the {settings.max_duration_s:.0f} s limit"
        return _skipped(source, url, info, "too_long", reason, run_id)
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
    return SkippedItem(source.url, url, title, code, reason, run_id, _now())


def _skip_error(
    source: Source, url: str, title: str, err: BaseException, run_id: str
) -> SkippedItem:
    code, reason = _classify(err)
    log.info("skipped %s: %s (%s)", url, reason, code)
    return SkippedItem(source.url, url, title, code, reason, run_id, _now())


# -- download --------------------------------------------------------------------------------


def download_audio(
    item: MediaItem, dest_dir: Path, settings: IngestSettings, archive: Path | None = None
) -> Path:
    """Download ``item`` as 16 kHz mono WAV into ``dest_dir/<recording_id>.wav``.

    A valid file already there is returned as is: a re-run downloads nothing twice.
    ``archive`` is passed to yt-dlp as its ``download_archive``. The download goes to a
    temporary directory and is renamed into place only once ffprobe has verified it, so
    no partial file is ever left under the final name.

    Raises:
        IngestError: ``unreachable``, ``unsupported_url``, ``download_failed``,
            ``corrupt_media``, ``no_audio`` or ``too_long``.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{item.recording_id}.wav"
    if dest.exists():
        try:
            check_audio(dest, settings, item.duration)
            return dest
        except IngestError as err:
            log.warning("replacing invalid %s: %s", dest, err)
            dest.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{item.recording_id}.", suffix=".part", dir=dest_dir))
    try:
        wav, declared = _fetch(item, tmp, settings, archive)
        check_audio(wav, settings, item.duration or declared)
        os.replace(wav, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _fetch(
    item: MediaItem, tmp: Path, settings: IngestSettings, archive: Path | None
) -> tuple[Path, float | None]:
    """Run yt-dlp into ``tmp``; the WAV it made and the duration its container declared.

    The original media is kept next to the WAV (``keepvideo``) so that a truncated
    file, which ffmpeg decodes only in part, is caught by comparing the two.
    """
    from yt_dlp import YoutubeDL

    opts = _options(
        settings,
        noplaylist=True,
        postprocessors=[{"key": "FFmpegExtractAudio", "preferredcodec": "wav"}],
        postprocessor_args={"extractaudio": ["-ar", str(SAMPLE_RATE), "-ac", "1"]},
        keepvideo=True,
    )
    opts.update(outtmpl={"default": str(tmp / "audio.%(ext)s")}, paths={})  # ours, always
    wav = tmp / "audio.wav"
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
            if code == "corrupt_media":
                code, reason = _diagnose(tmp, reason)
            raise IngestError(code, f"{item.url}: {reason}") from err
        if wav.exists():
            return wav, _container_duration(p for p in tmp.iterdir() if p != wav)
        # the archive lists it but the file is gone: the caller still needs the audio
    raise IngestError("download_failed", f"{item.url}: yt-dlp produced no audio file")


def _container_duration(paths: Iterable[Path]) -> float | None:
    """The longest duration any of the original media files declares in its header."""
    durations = [float((_ffprobe(p) or {}).get("format", {}).get("duration") or 0.0) for p in paths]
    return max(durations, default=0.0) or None


def _diagnose(tmp: Path, reason: str) -> tuple[str, str]:
    """Why audio extraction failed: the downloaded media is corrupt, or has no audio."""
    for path in sorted(tmp.iterdir()):
        probe = _ffprobe(path)
        if probe is None:
            return "corrupt_media", "the downloaded file is not valid media (truncated or corrupt)"
        if not any(s.get("codec_type") == "audio" for s in probe.get("streams", [])):
            return "no_audio", "the media has no audio stream"
    return "corrupt_media", reason


def _ffprobe(path: Path) -> dict[str, Any] | None:
    """ffprobe's streams and format of ``path``, or None when it cannot read the file."""
    entries = "stream=codec_type,sample_rate,channels:format=duration"
    cmd = ["ffprobe", "-v", "error", "-show_entries", entries, "-of", "json", str(path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError as err:
        raise RuntimeError("ffprobe is not installed (it ships with ffmpeg)") from err
    if done.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(done.stdout or "{}")
    return data


def check_audio(path: Path, settings: IngestSettings, expected_s: float | None = None) -> float:
    """Verify a WAV is 16 kHz mono, not empty, not truncated, not too long; its duration.

    Raises:
        IngestError: ``corrupt_media``, ``no_audio`` or ``too_long``.
    """
    probe = _ffprobe(path)
    if probe is None:
        raise IngestError("corrupt_media", f"{path.name}: ffprobe cannot read it")
    audio = [s for s in probe.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise IngestError("no_audio", f"{path.name}: no audio stream")
    rate, channels = int(audio[0].get("sample_rate") or 0), int(audio[0].get("channels") or 0)
    if (rate, channels) != (SAMPLE_RATE, 1):
        raise IngestError("corrupt_media", f"{path.name}: {rate} Hz, {channels} channels")
    duration = float(probe.get("format", {}).get("duration") or 0.0)
    if duration <= 0:
        raise IngestError("corrupt_media", f"{path.name}: no audio samples")
    if duration > settings.max_duration_s:
        limit = settings.max_duration_s
        raise IngestError("too_long", f"{path.name}: {duration:.0f} s is over {limit:.0f} s")
    if expected_s and duration < expected_s - max(1.0, 0.05 * expected_s):
        raise IngestError(
            "corrupt_media", f"{path.name}: {duration:.1f} s of an expected {expected_s:.1f} s"
        )
    return duration
