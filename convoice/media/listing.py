"""List the media behind a source and licence-gate each one, through yt-dlp.

Everything goes through yt-dlp's Python API, so a video, a playlist, a channel, a search
page or a direct media link are handled alike. Every entry that fails or is refused
becomes a :class:`~convoice.records.SkippedItem` with a reason code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus, urlsplit

from convoice.config import IngestSettings
from convoice.media.local import allows_file_urls, is_file_url, local_media
from convoice.media.ytdlp import classify, kept, options
from convoice.models.licence import decide_licence
from convoice.records import MediaItem, SkippedItem, SkipReason, Source, now

log = logging.getLogger(__name__)

_MAX_DEPTH = 3  # channel -> tab -> playlist -> video
_YOUTUBE_CC_FILTER = "EgIwAQ%253D%253D"


def cc_search_url(query: str) -> str:
    """A YouTube search restricted to Creative Commons videos.

    ``sp=EgIwAQ%253D%253D`` is YouTube's "Features: Creative Commons" search filter (the
    protobuf ``EgIwAQ==``, URL-encoded twice as YouTube itself writes it). Give the result
    to :func:`expand_source`; every entry is still licence-gated one by one.
    """
    search = quote_plus(query.strip())
    return f"https://www.youtube.com/results?search_query={search}&sp={_YOUTUBE_CC_FILTER}"


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
    if is_file_url(source.url):
        yield from _expand_local(source, settings, run_id)
        return
    ydl = kept(options(settings, extract_flat="in_playlist"))
    try:
        info = ydl.extract_info(source.url, download=False)
    except Exception as err:  # one bad source must not stop a batch
        yield _skip_error(source, source.url, "", err, run_id)
        return
    yield from _walk(ydl, source, dict(info or {}), settings, run_id, 0)


def _expand_local(
    source: Source, settings: IngestSettings, run_id: str
) -> Iterator[MediaItem | SkippedItem]:
    """A local file, or each media file of a local folder, through the same gate."""
    try:
        urls = local_media(source.url)
    except FileNotFoundError as err:
        yield SkippedItem(
            source.url, source.url, "", SkipReason.UNREACHABLE, str(err), run_id, now(),
            source.line,
        )  # fmt: skip
        return
    if not urls:
        reason = "a folder with no media files (see convoice.media.local.MEDIA_SUFFIXES)"
        yield _skipped(source, source.url, {}, SkipReason.UNSUPPORTED_URL, reason, run_id)
        return
    ydl = kept(options(settings, **allows_file_urls(source.url)))
    for url in urls:
        try:
            info = ydl.extract_info(url, download=False)
        except Exception as err:  # each file fails on its own
            yield _skip_error(source, url, "", err, run_id)
            continue
        yield _gate(source, dict(info or {}), settings, run_id)


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
        reason = decision.reason
        if is_file_url(url) and not source.declared_license:
            reason += "; a local file has no platform to report one: declare it in a sources file"
        return _skipped(source, url, info, SkipReason.NOT_CREATIVE_COMMONS, reason, run_id)
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
        uploader=str(info.get("uploader") or info.get("channel") or source.author or host),
        uploader_url=str(info.get("uploader_url") or info.get("channel_url") or ""),
        upload_date=str(info.get("upload_date") or ""),
        license=decision.license,
        license_raw=decision.license_raw,
        license_origin=decision.origin,
        duration=duration,
        page=source.page,
    )


def _skipped(
    source: Source, url: str, info: dict[str, Any], code: str, reason: str, run_id: str
) -> SkippedItem:
    title = str(info.get("title") or "")
    return SkippedItem(source.url, url, title, code, reason, run_id, now(), source.line)


def _skip_error(
    source: Source, url: str, title: str, err: BaseException, run_id: str
) -> SkippedItem:
    code, reason = classify(err)
    log.debug("cannot list %s: %s (%s)", url, reason, code)
    return SkippedItem(source.url, url, title, code, reason, run_id, now(), source.line)
