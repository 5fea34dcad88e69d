"""A channel's new ingest made with its vocabulary is round two already: round two leaves it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import urlsplit

from convoice.records import Term, TermState
from convoice.storage import Store
from convoice.storage.vocabulary import set_term, write_terms


def test_an_ingest_with_the_channels_words_is_not_transcribed_again(
    tmp_path: Path,
    prefect_harness: None,
    small_corpus,
    served_corpus: str,  # type: ignore[no-untyped-def]
) -> None:
    from convoice.flows.ingest import ingest_flow
    from convoice.flows.retranscribe import retranscribe_flow

    channel = urlsplit(served_corpus).netloc  # direct links: the uploader is the host
    store = Store(tmp_path)
    set_term(store, channel, "Tlaxcala", TermState.ACTIVE, "me")
    write_terms(store, [Term(channel, "Siobhan", 2, clip_ids=("elsewhere",))])  # taught
    episode = small_corpus.episodes[0].media_path.relative_to(small_corpus.root).as_posix()
    sources = tmp_path / "sources.csv"
    with sources.open("w", newline="") as handle:
        csv.writer(handle).writerows([["url", "license"], [served_corpus + episode, "CC-BY-4.0"]])
    ingest_flow(sources_file=str(sources), home=str(tmp_path))
    rows = store.clips().to_pylist()
    keys = {json.loads(r["models"]).get("round_two") for r in rows}
    assert len(rows) >= 2 and len(keys) == 1 and None not in keys, keys  # every clip: one key
    versions = store.table_versions()
    report = retranscribe_flow(home=str(tmp_path))
    assert report.candidates == len(rows) and report.already_tried == len(rows)
    assert report.transcribed == 0
    assert store.table_versions()["clips"] == versions["clips"]  # nothing written again
