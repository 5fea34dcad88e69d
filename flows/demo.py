"""``convoice demo``: sample videos served on 127.0.0.1, ingested by URL, released.

The sample episodes are synthesised from distinct voices (one voice talks in
several episodes, so identity across videos is exercised), muxed into MP4,
served over HTTP and ingested through yt-dlp exactly like real videos. One
extra video is listed without a licence to show the licence gate at work.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger

from convoice.config import load_settings
from convoice.engines import loaders
from convoice.flows.ingest import ingest_flow
from convoice.models.run_summary import IngestReport
from convoice.storage import Release, Store
from convoice.synth import samples


@dataclass(frozen=True)
class DemoResult:
    report: IngestReport
    release: Release
    speakers: int


def _add_unlicensed(corpus: samples.Corpus, base_url: str, sources: Path) -> None:
    """List one more video whose licence nobody declared: the gate must skip it."""
    src = corpus.episodes[0].media_path
    unlicensed = corpus.root / "all-rights-reserved.mp4"
    shutil.copyfile(src, unlicensed)
    with sources.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow([base_url + unlicensed.name, "", "no licence declared"])


@flow(name="convoice-demo", log_prints=True)
def demo_flow(home: str | None = None, workdir: str | None = None) -> DemoResult:
    """Make the sample videos, serve them, ingest them by URL and release a version."""
    logger = get_run_logger()
    settings = load_settings(home=home)
    store = Store.open(settings)
    media = Path(workdir) if workdir else loaders.cache_dir() / "demo-media"
    logger.info("making sample videos in %s", media)
    corpus = samples.demo_corpus(media)
    with samples.serve_directory(corpus.root) as base_url:
        sources = media / "sources.csv"
        samples.write_sources_csv(corpus, base_url, sources)
        _add_unlicensed(corpus, base_url, sources)
        logger.info("serving %d videos at %s", len(corpus.episodes) + 1, base_url)
        report = ingest_flow(sources_file=str(sources), home=settings.home)
    release = store.release(note=f"demo: {len(report.recordings)} recordings")
    return DemoResult(report, release, len(store.speakers()))
