"""The identity replay (``python -m convoice.bench.identity_replay``) reproduces an ingest.

The small corpus ingested for real (segmentation, CAM++, Whisper, consolidation), then
its identities replayed from the stored embeddings: every machine id and the consolidated
partition must come out as the ingest wrote them, and the replay must leave the store as
it was. With the pitch veto on, the three voices (two men, a woman) keep their ids.
"""

from __future__ import annotations

import pytest

from convoice.bench import identity_replay
from convoice.config import load_settings
from convoice.storage import Store
from convoice.synth.serve import write_sources_csv


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness, small_corpus, served_corpus
):  # type: ignore[no-untyped-def]
    from convoice.flows.ingest import ingest_flow

    home = tmp_path_factory.mktemp("replay-home")
    sources = write_sources_csv(small_corpus, served_corpus, home / "sources.csv")
    ingest_flow(sources_file=str(sources), home=str(home))
    return Store.open(load_settings(home=str(home))), load_settings(home=str(home))


def test_the_replay_reproduces_the_ingest_and_writes_nothing(ingested) -> None:  # type: ignore[no-untyped-def]
    store, settings = ingested
    before = store.clips().to_pylist()
    replayed = identity_replay.replay_store(store, settings)
    assert len(replayed.clips) == len(before) > 0
    assert identity_replay.check_reproduces(store, replayed) == {
        "machine_ids": True,
        "consolidated_partition": True,
    }
    assert store.clips().to_pylist() == before


def test_the_pitch_veto_keeps_these_voices_ids(ingested) -> None:  # type: ignore[no-untyped-def]
    store, settings = ingested
    rows, _ = identity_replay.stored_clips(store)
    pitch = identity_replay.clip_pitches(store, rows)
    assert sum(p == p for p in pitch.values()) >= 0.9 * len(pitch)  # nearly all voiced
    plain = identity_replay.replay_store(store, settings)
    vetoed = identity_replay.replay_store(store, settings, pitch, 7.0)
    assert vetoed.machine_ids == plain.machine_ids


def test_each_clips_speaker_probability_is_its_stored_evidence_through_the_shipped_calibration(
    ingested,
) -> None:  # type: ignore[no-untyped-def]
    from convoice.storage.calibration import shipped
    from convoice.training.calibrate import stored_evidence, stored_kind

    store, _ = ingested
    calibration = shipped()
    assert calibration.speaker_model is not None
    rows = store.clips().to_pylist()
    modelled = 0
    for row in rows:
        raw = row["speaker_score_raw"]
        evidence = stored_evidence(row["extra"], raw, row["duration"])
        assert evidence is not None
        curve = calibration.speaker_probability(raw, stored_kind(row["extra"]))
        again = calibration.speaker_probability(raw, stored_kind(row["extra"]), evidence)
        assert row["speaker_confidence"] == pytest.approx(again, abs=2e-3)  # stored rounded
        if curve < calibration.speaker_model.below:
            modelled += curve != again
        else:
            assert again == curve and row["speaker_status"] == "accepted"
    assert modelled > 0  # the model, not the curve, gave the labels under the bar
