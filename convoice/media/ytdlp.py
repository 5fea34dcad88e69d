"""yt-dlp plumbing: the engine's options, its log output, and what its errors mean."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from typing import Any

from convoice.config import IngestSettings
from convoice.records import SkipReason

log = logging.getLogger(__name__)


class _YtdlpLogger:
    """Routes yt-dlp's output to logging: errors are reported by us, classified."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = warning = error = debug


def options(settings: IngestSettings, **stage: Any) -> dict[str, Any]:
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


KEPT_PER_THREAD = 4  # yt-dlp instances a thread keeps (expand, download with and without archive)
_kept = threading.local()


def kept(opts: dict[str, Any], outtmpl: str = "") -> Any:
    """A ``yt_dlp.YoutubeDL`` with ``opts``, made once per thread and kept for the next call.

    Making one costs about 40 ms of CPU (it de-duplicates the names of its 1,800
    extractors, quadratically) and its first request about 50 ms more; a kept one lists a
    local file in about 9 ms, and keeps its HTTP connections. Listing and downloading the
    benchmark's 26 tuning-half recordings took 6.1-6.6 s of CPU with a fresh instance per
    call and 3.4-3.8 s with kept ones, ffmpeg included (README "Where the time goes",
    session 32). Instances are per thread (yt-dlp's are not thread-safe) and keyed by
    every option but ``logger`` and ``outtmpl``; ``outtmpl`` ("" = yt-dlp's) is set for the
    call at hand, which yt-dlp reads when it names a file. A thread keeps its
    :data:`KEPT_PER_THREAD` latest; an older one is closed.
    """
    from yt_dlp import YoutubeDL
    from yt_dlp.utils import DEFAULT_OUTTMPL

    key = repr(sorted((k, v) for k, v in opts.items() if k not in ("logger", "outtmpl")))
    cache: OrderedDict[str, Any] = _kept.__dict__.setdefault("instances", OrderedDict())
    ydl = cache.pop(key, None)
    if ydl is None:
        ydl = YoutubeDL({k: v for k, v in opts.items() if k != "outtmpl"})
    cache[key] = ydl
    while len(cache) > KEPT_PER_THREAD:
        cache.popitem(last=False)[1].close()
    ydl.params["outtmpl"]["default"] = outtmpl or DEFAULT_OUTTMPL["default"]
    return ydl


def warm_up() -> None:
    """Pay yt-dlp's one-off cost of a process ahead of its first URL: its import (about 0.6 s)
    and the URL patterns of its 1,800 extractors, compiled the first time a URL is matched
    against them (about 0.9 s; each class keeps its compiled pattern). Meant for the thread
    that loads the models while Prefect's server starts (:mod:`convoice.orchestration.preload`)."""
    from yt_dlp.extractor import gen_extractor_classes

    for extractor in gen_extractor_classes():
        extractor.suitable("http://127.0.0.1/")


def short(text: str, limit: int = 300) -> str:
    text = re.sub(r"^(ERROR: )?(\[[\w:]+\] )?([^\s:]+: )?", "", " ".join(text.split()))
    text = re.sub(r" \(caused by .*\)$", "", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify(err: BaseException) -> tuple[str, str]:
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
        return SkipReason.UNSUPPORTED_URL, short(str(cause))
    if isinstance(cause, HTTPError):
        return SkipReason.UNREACHABLE, f"HTTP error {cause.status} ({cause.reason})"
    if isinstance(cause, TransportError):
        errno = re.search(r"\[Errno -?\d+\]\s*([^'\"()]+)", str(cause))
        return (
            SkipReason.UNREACHABLE,
            f"cannot connect: {errno[1].strip() if errno else short(str(cause))}",
        )
    if isinstance(cause, ContentTooShortError):
        return SkipReason.DOWNLOAD_FAILED, "the transfer ended before the whole file arrived"
    if isinstance(cause, PostProcessingError):
        return SkipReason.CORRUPT_MEDIA, short(str(cause))
    if isinstance(cause, ExtractorError) and "is not a valid URL" in str(cause):
        return SkipReason.UNSUPPORTED_URL, short(str(cause))
    return SkipReason.DOWNLOAD_FAILED, short(str(cause)) or type(cause).__name__
