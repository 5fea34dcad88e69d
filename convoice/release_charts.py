"""The figures of a release's report page, drawn with matplotlib's Agg canvas as PNG bytes.

No display and no pyplot state; the numbers come from :mod:`convoice.models.release_figures`.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from convoice.media.audio import to_mono
from convoice.models import release_figures as calc
from convoice.records import ClipStatus

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLOURS: dict[str, str] = {
    ClipStatus.ACCEPTED: "#2e9e5b",
    ClipStatus.REVIEW: "#f0a202",
    ClipStatus.REJECTED: "#d64545",
}
TOP = 15  # speakers and languages drawn
PALETTE = 10  # speakers with their own colour on the embedding map


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def shares_chart(shares: list[calc.Share], title: str, unit: calc.Unit) -> bytes:
    """Horizontal bars: hours (or minutes) per speaker or language, stacked by status."""
    top = shares[:TOP][::-1]
    figure = _figure(6.2, 0.9 + 0.28 * max(len(top), 1))
    axes = figure.subplots()
    left = np.zeros(len(top))
    for status in calc.STATUSES:
        values = np.array([s.hours.get(status, 0.0) * unit.per_hour for s in top])
        axes.barh([s.name for s in top], values, left=left, color=COLOURS[status], label=status)
        left += values
    axes.set_xlabel(unit.name)
    more = f" (top {TOP} of {len(shares)})" if len(shares) > TOP else ""
    axes.set_title(title + more, loc="left", fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    axes.tick_params(labelsize=8)
    return png(figure)


def confidence_chart(clips: calc.ClipColumns, limits: dict[str, float]) -> bytes:
    """Histograms of speaker and transcript confidence, stacked by status."""
    figure = _figure(9.0, 3.0)
    bins = 20
    edges = np.linspace(0.0, 1.0, bins + 1)
    for axes, name, values, limit in zip(
        figure.subplots(1, 2),
        ("speaker confidence", "transcript confidence"),
        (clips.speaker_confidence, clips.transcript_confidence),
        (limits.get("min_speaker_confidence"), limits.get("min_transcript_confidence")),
        strict=True,
    ):
        bottom = np.zeros(bins)
        status = np.array(clips.status)
        for state in calc.STATUSES:
            counts = calc.histogram(values[status == state], bins)
            axes.bar(edges[:-1], counts, width=1 / bins, bottom=bottom, align="edge",
                     color=COLOURS[state], label=state)  # fmt: skip
            bottom += counts
        if limit is not None:
            axes.axvline(limit, color="#333", linestyle="--", linewidth=1)
            axes.text(limit, bottom.max() or 1, f" threshold {limit:.2f}", fontsize=8, va="top")
        axes.set_title(name, loc="left", fontsize=10)
        axes.set_xlabel("confidence")
        axes.set_ylabel("clips")
        axes.tick_params(labelsize=8)
    axes.legend(fontsize=8, loc="upper left")
    return png(figure)


def reasons_chart(rates: calc.Rates) -> bytes:
    """Horizontal bars: why clips wait for review."""
    reasons = rates.reasons[:TOP][::-1] or [("no clip in review", 0)]
    figure = _figure(6.2, 0.9 + 0.28 * len(reasons))
    axes = figure.subplots()
    axes.barh([r for r, _ in reasons], [n for _, n in reasons], color=COLOURS[ClipStatus.REVIEW])
    axes.set_xlabel("clips in review")
    axes.set_title("review reasons", loc="left", fontsize=10)
    axes.tick_params(labelsize=8)
    return png(figure)


def embedding_chart(clips: calc.ClipColumns, speakers: list[calc.Share]) -> bytes:
    """The clip embeddings on their first two principal components, by speaker."""
    from matplotlib import colormaps

    projection = calc.pca_2d(clips.embedding)
    figure = _figure(7.0, 5.0)
    axes = figure.subplots()
    names = [s.name for s in speakers[:PALETTE]]
    owner = np.array([clips.speaker_id[i] or calc.UNKNOWN for i in projection.rows])
    others = ~np.isin(owner, names)
    if others.any():
        grey = projection.xy[others]
        axes.scatter(grey[:, 0], grey[:, 1], s=8, color="#bbbbbb", label="other speakers")
    palette = colormaps["tab10"]
    for k, name in enumerate(names):
        mine = projection.xy[owner == name]
        axes.scatter(mine[:, 0], mine[:, 1], s=14, color=palette(k), label=name, alpha=0.85)
    axes.set_xlabel(f"PC 1 ({projection.explained[0]:.0%} of variance)")
    axes.set_ylabel(f"PC 2 ({projection.explained[1]:.0%})")
    axes.set_title("clip embeddings (resemblyzer), PCA", loc="left", fontsize=10)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    axes.tick_params(labelsize=8)
    return png(figure)


def _image(
    axes: Axes, data: np.ndarray, extent: tuple[float, float, float, float], label: str
) -> None:
    axes.imshow(data, origin="lower", aspect="auto", extent=extent, cmap="magma")
    axes.set_xlabel("seconds", fontsize=8)
    axes.set_ylabel(label, fontsize=8)
    axes.tick_params(labelsize=7)


def clip_images(samples: np.ndarray, rate: int) -> dict[str, bytes]:
    """Waveform, spectrogram and mel spectrogram of one clip, as PNG."""
    mono = to_mono(samples)
    seconds = len(mono) / rate
    images: dict[str, bytes] = {}
    figure = _figure(3.6, 1.9)
    axes = figure.subplots()
    axes.plot(np.arange(len(mono)) / rate, mono, linewidth=0.4, color="#1f5fa8")
    axes.set_xlim(0, seconds)
    axes.set_xlabel("seconds", fontsize=8)
    axes.tick_params(labelsize=7)
    images["waveform"] = png(figure)
    power = calc.spectrogram(mono)
    figure = _figure(3.6, 1.9)
    _image(figure.subplots(), calc.to_db(power), (0, seconds, 0, rate / 2000), "kHz")
    images["spectrogram"] = png(figure)
    mel = calc.mel_filterbank(rate) @ power
    figure = _figure(3.6, 1.9)
    _image(figure.subplots(), calc.to_db(mel), (0, seconds, 0, mel.shape[0]), "mel band")
    images["mel spectrogram"] = png(figure)
    return images
