"""Local media: files and folders on the machine that runs the ingest, as ``file://`` URLs.

An operator writes a path where a URL would go (``/data/talks/a.mp4``, ``./talks``,
``~/talks``, or a ``file://`` URL); :func:`local_url` turns it into the absolute
``file://`` URL the rest of the engine keys recordings by, and :func:`local_media` lists
the media files behind it (a folder: every media file under it, in name order). yt-dlp
reads ``file://`` URLs only when asked (:func:`allows_file_urls`), and is asked only for
sources that are themselves local, never for what a web page points to.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from convoice.media.tracks import RAW_AUDIO

MEDIA_SUFFIXES = frozenset(
    {
        ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".3gp",
        ".m4a", ".aac", ".mp3", ".opus", ".ogg", ".oga", ".flac", ".wav", ".wma", ".gsm",
        ".g722", *RAW_AUDIO,
    }
)  # fmt: skip
"""The file extensions a folder is searched for (any file named directly is tried)."""

_PATH_STARTS = ("/", "~", "./", "../")


def is_file_url(url: str) -> bool:
    """Whether ``url`` is a ``file://`` URL."""
    return url.lower().startswith("file:")


def local_url(cell: str, base: Path) -> str | None:
    """The absolute ``file://`` URL of a path as an operator wrote it (relative paths from
    ``base``), or None when ``cell`` is not a path (a web URL, say)."""
    text = cell.strip()
    if is_file_url(text):
        path = url_path(text)
    elif text.startswith(_PATH_STARTS) or text in (".", ".."):
        path = Path(text).expanduser()
    elif text and "://" not in text and (base / text).exists():
        path = Path(text)  # a bare name of a file or folder that is there ("talk.mp4")
    else:
        return None
    if not path.is_absolute():
        path = base / path
    return path.resolve().as_uri()


def url_path(url: str) -> Path:
    """The path of a ``file://`` URL."""
    return Path(unquote(urlsplit(url).path))


def local_media(url: str) -> list[str]:
    """The ``file://`` URLs of the media behind a local ``url``: the file itself, or every
    file with a media extension (:data:`MEDIA_SUFFIXES`) under a folder, hidden ones left
    out, in path order.

    Raises:
        FileNotFoundError: nothing is at that path.
    """
    path = url_path(url)
    if path.is_file():
        return [url]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    found = (
        p
        for p in sorted(path.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in MEDIA_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    return [p.as_uri() for p in found]


def allows_file_urls(url: str) -> dict[str, bool]:
    """The yt-dlp option that lets it read ``url`` when that is a local file (none else)."""
    return {"enable_file_urls": True} if is_file_url(url) else {}
