"""The demo's sources: the sample videos listed for ingest, and one nobody licensed.

:func:`add_unlicensed` lists one more video whose licence nobody declared, so
``convoice demo`` shows the licence gate at work (:mod:`convoice.flows.demo`).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from convoice.synth import samples


def add_unlicensed(corpus: samples.Corpus, base_url: str, sources: Path) -> None:
    """List one more video whose licence nobody declared: the gate must skip it."""
    src = corpus.episodes[0].media_path
    unlicensed = corpus.root / "all-rights-reserved.mp4"
    shutil.copyfile(src, unlicensed)
    with sources.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow([base_url + unlicensed.name, "", "no licence declared"])
