"""The operator's sources file: read it row by row, reject the rows that cannot be ingested."""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from convoice.media.local import local_url, url_path
from convoice.models.licence import licence_problem
from convoice.records import SkippedItem, SkipReason, Source, now

SOURCE_COLUMNS = ("url", "license", "note")
"""The columns of a sources file without a header row, in that order."""
_COLUMN_ALIASES = {
    "licence": "license", "link": "url", "notes": "note", "creator": "author", "by": "author",
    "webpage": "page",
}  # fmt: skip
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
    ``licence``, ``note``, ``author`` or ``creator``: who made the work, named in its
    attribution where the platform names nobody, ``page``: where people find it, linked in
    its attribution instead of the media's own URL; any order, other columns ignored);
    without one, the columns are ``url,license[,note]``. Blank lines and lines starting with ``#``
    are ignored; a blank licence means "none declared" (the platform must then
    report one). A path (``/data/a.mp4``, ``./talks``, ``~/talks``, relative to the
    sources file's folder) or ``file://`` URL names local media: a file, or every media
    file in a folder (:mod:`convoice.media.local`). A bad row (an empty or malformed
    URL, a path where nothing is, a licence that is not Creative Commons or is unknown,
    a repeat of an earlier row) becomes a rejected :class:`SkippedItem` with its line
    number; the other rows still run.

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
    base = Path(path).resolve().parent  # where its relative paths start
    columns, rows = _columns(name, rows, base)
    result = SourcesFile([], [])
    seen: dict[tuple[str, str, str], int] = {}
    for line, cells in rows:
        row = {col: cell.strip() for col, cell in zip(columns, cells, strict=False)}
        url, declared, note = row.get("url", ""), row.get("license", ""), row.get("note", "")
        local = local_url(url, base)
        url = local or url
        problem = _row_problem(url, declared, local is not None) or _repeat(
            seen, (url, declared, note), line
        )
        if problem is None:
            author, page = row.get("author", ""), row.get("page", "")
            result.sources.append(Source(url, declared or None, note, line, author, page))
            continue
        code, reason = problem
        skipped = SkippedItem(str(path), url, note, code, reason, run_id, now(), line)
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
    name: str, rows: list[tuple[int, list[str]]], base: Path
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The column names (from the header, or the default order) and the data rows; a first
    row naming local media (a path from ``base``) or a URL is a data row."""
    line, first = rows[0]
    header = [_COLUMN_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in first]
    if "url" in header:
        if "license" not in header:
            raise SourcesError(
                f"{name}, line {line}: missing column 'license' (found: {', '.join(header)})"
            )
        return header, rows[1:]
    if local_url(first[0], base) or _url_problem(first[0].strip()) is None:
        return list(SOURCE_COLUMNS), rows  # no header: url,license[,note]
    raise SourcesError(
        f"{name}, line {line}: missing column 'url' (found: {', '.join(header)}); the first "
        "row must name the columns (url, license[, note]) or be a row with a URL"
    )


def _row_problem(url: str, declared: str, local: bool = False) -> tuple[str, str] | None:
    """Why one row cannot be ingested (reason code, reason), or None; a ``local`` row's
    ``url`` is the ``file://`` URL of the path it names."""
    if local and not url_path(url).exists():
        return SkipReason.UNREACHABLE, f"no such file or folder: {url_path(url)}"
    problem = None if local else _url_problem(url)
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
        return f"malformed url {url!r}: no scheme (write http:// or https://, or a path: ./{url})"
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
