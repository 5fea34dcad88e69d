"""``convoice dataset report``: one self-contained HTML page about a release.

Reads the release's Parquet files and a few clips' audio from the store (local
or remote), draws the figures with matplotlib's Agg canvas (no display, no
pyplot state) and embeds them as base64 PNG, and the clips' audio as base64
FLAC, so the file can be mailed or opened anywhere. The numbers come from
:mod:`convoice.models.release_figures`.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

import convoice
from convoice.media.audio import read_encoded
from convoice.models import release_figures as calc
from convoice.records import Calibration, ClipStatus, LabelStatus, ReleaseClip
from convoice.release_charts import (
    COLOURS,
    TOP,
    clip_images,
    confidence_chart,
    embedding_chart,
    reasons_chart,
    shares_chart,
)
from convoice.storage.releases import release_key
from convoice.storage.rows import release_clip_records

if TYPE_CHECKING:
    from convoice.storage import Release, Store

COLUMNS = ["clip_id", "recording_id", "speaker_id", "language", "status", "duration",
           "speaker_confidence", "transcript_confidence", "review_reasons", "labelled_by",
           "embedding", "audio_uri", "text", "settings", "speaker_status", "transcript_status",
           "calibration_version"]  # fmt: skip


@dataclass(frozen=True)
class Sample:
    """One clip shown with its audio and images."""

    clip: ReleaseClip
    attribution: str
    flac: bytes
    images: dict[str, bytes]  # title -> PNG


def read_release(store: Store, release: Release) -> tuple[list[ReleaseClip], dict[str, str]]:
    """The release's clips (the report's columns) and recording id -> attribution."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    key = release_key(release.version)
    clips = pq.read_table(pa.BufferReader(store.location.read_bytes(f"{key}/clips.parquet")))
    clips = clips.select([c for c in COLUMNS if c in clips.column_names])
    recordings = pq.read_table(
        pa.BufferReader(store.location.read_bytes(f"{key}/recordings.parquet")),
        columns=["recording_id", "attribution"],
    )
    attributions = dict(
        zip(
            recordings["recording_id"].to_pylist(),
            recordings["attribution"].to_pylist(),
            strict=True,
        )
    )
    return release_clip_records(clips), attributions


def load_samples(
    store: Store, clips: list[ReleaseClip], picked: list[int], attributions: dict[str, str]
) -> list[Sample]:
    """Audio and images of the picked clips."""
    found = []
    for i in picked:
        clip = clips[i]
        flac = store.read_audio(clip.audio_uri)
        audio, rate = read_encoded(flac)
        found.append(
            Sample(clip, attributions.get(clip.recording_id, ""), flac, clip_images(audio, rate))
        )
    return found


# -- page ----------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;
 padding:0 16px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.muted{color:#666} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{background:#f5f6f8;border-radius:8px;padding:10px 14px;min-width:110px}
.card b{display:block;font-size:20px}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left} img{max-width:100%}
.clip{border:1px solid #e3e3e3;border-radius:8px;padding:12px;margin:12px 0}
.clip .imgs{display:flex;gap:8px;flex-wrap:wrap} .clip figure{margin:0}
.clip figcaption{font-size:12px;color:#666}
.tag{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;font-size:12px}
"""


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _shares(shares: list[calc.Share], what: str, unit: calc.Unit) -> str:
    """A chart and a table of hours (or minutes) per ``what`` (speaker or language)."""
    rows = [
        [s.name, str(s.clips), unit.show(s.total_hours)]
        + [unit.show(s.hours.get(k, 0.0)) for k in calc.STATUSES]
        for s in shares[:TOP]
    ]
    table = _table([what, "clips", unit.name, *calc.STATUSES], rows)
    chart = _img(shares_chart(shares, f"{unit.name} per {what}", unit), f"{unit.name} per {what}")
    return f'<div class="row">{chart}{table}</div>'


def _sample_html(sample: Sample) -> str:
    clip = sample.clip
    clip_id, status = clip.clip_id, str(clip.status or "")
    figures = "".join(
        f"<figure>{_img(data, title + ' of ' + clip_id)}<figcaption>{title}</figcaption></figure>"
        for title, data in sample.images.items()
    )
    facts = [clip_id, f"{clip.duration or 0:.2f} s",
             f"speaker {calc.number(clip.speaker_confidence):.2f}",
             f"transcript {calc.number(clip.transcript_confidence):.2f}",
             *(str(r) for r in clip.review_reasons)]  # fmt: skip
    colour = COLOURS.get(status, "#888")
    speaker = html.escape(clip.speaker_id or calc.UNKNOWN)
    text = html.escape(clip.text or "")
    language = html.escape(clip.language or "?")
    flac = base64.b64encode(sample.flac).decode()
    return (
        f'<div class="clip"><div><b>{speaker}</b> '
        f'<span class="tag" style="background:{colour}">{html.escape(status)}</span> '
        f'<span class="muted">{html.escape(" · ".join(facts))}</span></div>'
        f'<p>\u201c{text}\u201d <span class="muted">({language})</span></p>'
        f'<audio controls preload="none" src="data:audio/flac;base64,{flac}"></audio>'
        f'<div class="imgs">{figures}</div>'
        f'<div class="muted">{html.escape(sample.attribution)}</div></div>'
    )


def _cards(items: list[tuple[str, str]]) -> str:
    cards = "".join(f'<div class="card"><b>{v}</b>{html.escape(k)}</div>' for k, v in items)
    return f'<div class="cards">{cards}</div>'


def reliability_lines(clips: list[ReleaseClip], calibrations: dict[str, Calibration]) -> list[str]:
    """Per-kind statuses, and each calibration the clips name with its reliability diagram
    (a text table: on the clips it was judged on, never those it was fitted on)."""
    from convoice.models.calibration import render_table

    lines = ["label kind          accepted  review  labelled  rejected"]
    for kind in ("speaker_status", "transcript_status"):
        of_kind = attrgetter(kind)  # None in releases made before per-kind statuses
        values = [str(of_kind(c) or c.status or "") for c in clips]
        counts = [values.count(s) for s in LabelStatus]
        lines.append(f"{kind:<18} " + " ".join(f"{n:9d}" for n in counts))
    used: dict[str, int] = {}
    for c in clips:
        version = c.calibration_version or ""
        used[version] = used.get(version, 0) + 1
    for version, n in sorted(used.items()):
        cal = calibrations.get(version)
        if cal is None:
            what = "raw scores (written before calibration)" if not version else "not in this store"
            lines.append(f"calibration {version or 'none'}: {n} clips, {what}")
            continue
        ece = "" if cal.speaker_ece is None else f", ECE {cal.speaker_ece:.4f} on {cal.judged_on}"
        lines.append(f"calibration {version}: {n} clips{ece}. {cal.rule}")
        if cal.speaker_reliability:
            lines += render_table(cal.speaker_reliability)
        else:
            lines.append(
                "  reliability: judged on the benchmark's reporting half (README, Benchmark)"
            )
    return lines


def reliability_html(clips: list[ReleaseClip], calibrations: dict[str, Calibration]) -> str:
    """:func:`reliability_lines` as preformatted text."""
    return f"<pre>{html.escape(chr(10).join(reliability_lines(clips, calibrations)))}</pre>"


def render_html(
    release: Release,
    released: list[ReleaseClip],
    samples: list[Sample],
    calibrations: dict[str, Calibration] | None = None,
) -> str:
    """The whole report page."""
    clips = calc.ClipColumns.from_clips(released)
    speakers = calc.hours_by(clips.speaker_id, clips)
    languages = calc.hours_by(clips.language, clips)
    rates = calc.rates(clips)
    hours = float(clips.duration.sum()) / 3600.0
    unit = calc.Unit.for_hours(hours)
    cards = _cards(
        [("clips", str(clips.n)), (unit.name, unit.show(hours)), ("speakers", str(len(speakers))),
         ("languages", str(len(languages))), ("recordings", str(release.n_recordings)),
         *((s, f"{rates.share(s):.0%}") for s in calc.STATUSES),
         ("labelled by people", str(rates.human_labelled))]
    )  # fmt: skip
    sections = [
        ("hours", "Hours per speaker and language",
         _shares(speakers, "speaker", unit) + _shares(languages, "language", unit)),
        ("confidence", "Confidence",
         _img(confidence_chart(clips, calc.thresholds(released)), "confidence histograms")),
        ("review", "Review and rejection", _review_html(rates, unit)),
        ("reliability", "Label kinds and reliability of the confidences",
         reliability_html(released, calibrations or {})),
        ("embeddings", "Speaker embeddings",
         '<p class="muted">Each point is a clip. The clips of one speaker should gather; a'
         " speaker split in two clouds, or two speakers in one, is worth a look.</p>"
         + _img(embedding_chart(clips, speakers), "embedding map")),
        ("samples", "Sample clips", "".join(_sample_html(s) for s in samples)),
    ]  # fmt: skip
    return _page(release, cards, sections)


def _review_html(rates: calc.Rates, unit: calc.Unit) -> str:
    """The clips and time of each status, why clips wait for review: tables and a chart."""
    status_rows = [[s, str(rates.clips.get(s, 0)), f"{rates.share(s):.1%}",
                    unit.show(rates.hours.get(s, 0.0)), f"{rates.share(s, 'hours'):.1%}"]
                   for s in calc.STATUSES]  # fmt: skip
    status_table = _table(["status", "clips", "share", unit.name, "share of time"], status_rows)
    in_review = rates.clips.get(ClipStatus.REVIEW, 0) or 1
    reason_table = _table(
        ["review reason", "clips", "of review"],
        [[r, str(n), f"{n / in_review:.0%}"] for r, n in rates.reasons],
    )
    return f'<div class="row">{status_table}{reason_table}</div>' + _img(
        reasons_chart(rates), "review reasons"
    )


def _page(release: Release, cards: str, sections: list[tuple[str, str, str]]) -> str:
    """The HTML document: title, where the release is, its note, the cards and the sections."""
    title = f"Con Voice dataset {release.name}" + (f" ({release.tag})" if release.tag else "")
    where = html.escape(f"released {release.created_at} · {release.path}")
    note = f"<p>{html.escape(release.note)}</p>" if release.note else ""
    made = f"convoice {convoice.__version__} · report made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    body = "".join(
        f'<section id="{k}"><h2>{h}</h2>{content}</section>' for k, h, content in sections
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><div class="muted">{where}</div>{note}{cards}'
        f'{body}<p class="muted">{made}</p></body></html>'
    )


def write_report(store: Store, release: Release, out: Path, samples: int = 4) -> Path:
    """Write the HTML report of ``release`` to ``out``; returns its path."""
    released, attributions = read_release(store, release)
    clips = calc.ClipColumns.from_clips(released)
    picked = calc.pick_samples(clips, calc.hours_by(clips.speaker_id, clips), samples)
    from convoice.storage.calibration import by_version

    chosen = load_samples(store, released, picked, attributions)
    page = render_html(release, released, chosen, by_version(store.location))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out.resolve()


def release_reliability(store: Store, release: Release) -> str:
    """The release's label kinds and calibrations as text (``convoice dataset report``)."""
    from convoice.storage.calibration import by_version

    released, _ = read_release(store, release)
    return "\n".join(reliability_lines(released, by_version(store.location)))
