"""Download one media item's audio with yt-dlp into a checked 16 kHz mono WAV.

yt-dlp fetches the media as the site serves it; :mod:`convoice.media.tracks` picks,
decodes and checks its audio track. A failure raises an
:class:`~convoice.media.errors.IngestError` with a machine-readable ``reason_code``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from convoice.config import IngestSettings
from convoice.media.errors import IngestError
from convoice.media.local import allows_file_urls
from convoice.media.tracks import RAW_AUDIO, check_audio, choose_audio_track, extract_audio
from convoice.media.ytdlp import classify, kept, options
from convoice.records import MediaItem, SkipReason

log = logging.getLogger(__name__)


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
    dest = download_path(dest_dir, item.recording_id)
    if dest.exists():
        try:
            check_audio(dest, settings)
            return dest
        except IngestError as err:
            log.warning("replacing invalid %s: %s", dest, err)
            dest.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{item.recording_id}.", suffix=".part", dir=dest_dir))
    try:
        original = _named_as_served(_fetch(item, tmp, settings, archive), item.url)
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


def download_path(dest_dir: Path, recording_id: str) -> Path:
    """Where :func:`download_audio` puts ``recording_id``'s audio in ``dest_dir``."""
    return dest_dir / f"{recording_id}.wav"


def remove_partial_downloads(dest_dir: Path, recording_id: str) -> int:
    """Remove the temporary directories a killed download of ``recording_id`` left in
    ``dest_dir`` (only its claimant may call this: no download of it runs); how many."""
    stale = list(dest_dir.glob(f".{recording_id}.*.part")) if dest_dir.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def remove_download(wav: Path) -> None:
    """Delete a downloaded WAV and its track note (once the store holds the recording)."""
    wav.unlink(missing_ok=True)
    _track_file(wav).unlink(missing_ok=True)


def _track_file(wav: Path) -> Path:
    return wav.with_suffix(".track.txt")


def _named_as_served(media: Path, url: str) -> Path:
    """``media`` renamed to the extension of ``url``'s path when that names headerless audio
    (:data:`~convoice.media.tracks.RAW_AUDIO`): yt-dlp saves a ``.ulaw`` or ``.sln16`` it
    does not know as ``.unknown_video``, and only the extension says how to read it."""
    suffix = Path(urlparse(url).path).suffix.lower()
    if suffix not in RAW_AUDIO or media.suffix.lower() == suffix:
        return media
    return media.rename(media.with_suffix(suffix))


def _fetch(item: MediaItem, tmp: Path, settings: IngestSettings, archive: Path | None) -> Path:
    """Run yt-dlp into ``tmp``; the media file it downloaded, as the site serves it."""
    opts = options(settings, noplaylist=True, **allows_file_urls(item.url))
    opts["paths"] = {}  # our file name, always
    for use_archive in (True, False) if archive is not None else (False,):
        if use_archive:
            opts["download_archive"] = str(archive)
        else:
            opts.pop("download_archive", None)
        try:
            kept(opts, str(tmp / "media.%(ext)s")).extract_info(item.url, download=True)
        except Exception as err:
            code, reason = classify(err)
            raise IngestError(code, reason) from err
        found = sorted(p for p in tmp.iterdir() if p.is_file() and not p.name.endswith(".part"))
        if found:
            return found[0]
        # the archive lists it but the file is gone: the caller still needs the audio
    raise IngestError(SkipReason.DOWNLOAD_FAILED, "yt-dlp produced no media file")
