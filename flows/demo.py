"""``convoice demo``: sample videos served on 127.0.0.1, ingested by URL, released.

The sample episodes are synthesised from distinct voices (one voice talks in
several episodes, so identity across videos is exercised), muxed into MP4,
served over HTTP and ingested through yt-dlp exactly like real videos. One
extra video is listed without a licence to show the licence gate at work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger

from convoice.config import load_settings
from convoice.engines import loaders
from convoice.flows.ingest import run_ingest
from convoice.models.run_summary import IngestReport
from convoice.storage import Release, Store
from convoice.synth import samples
from convoice.synth.demo_sources import add_unlicensed
from convoice.synth.serve import DEMO_PORT, on_port, serve_preferring, write_sources_csv


@dataclass(frozen=True)
class DemoResult:
    report: IngestReport
    release: Release
    speakers: int


@flow(name="convoice-demo", log_prints=True)
def demo_flow(home: str | None = None, workdir: str | None = None) -> DemoResult:
    """Make the sample videos, serve them, ingest them by URL and release a version."""
    logger = get_run_logger()
    settings = load_settings(home=home)
    store = Store.open(settings)
    media = Path(workdir) if workdir else loaders.cache_dir() / "demo-media"
    logger.info("making sample videos in %s", media)
    corpus = samples.demo_corpus(media)
    with serve_preferring(corpus.root, DEMO_PORT) as base_url:
        sources = media / "sources.csv"
        write_sources_csv(corpus, base_url, sources)
        add_unlicensed(corpus, base_url, sources)
        logger.info("serving %d videos at %s", len(corpus.episodes) + 1, base_url)
        if not on_port(base_url, DEMO_PORT):
            logger.warning(
                "port %d is taken: the videos' URLs, hence their recording ids, are new, so a "
                "store that has the demo already gets its videos again", DEMO_PORT,
            )  # fmt: skip
        report = run_ingest(sources_file=str(sources), home=settings.home)
    release = store.release(note=f"demo: {len(report.recordings)} recordings")
    return DemoResult(report, release, len(store.speakers()))
