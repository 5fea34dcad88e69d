"""The pitch veto: voices an octave apart never share an identity, in matching and in
consolidation; a person's merge still wins; a store written before pitch reads and grows.

Matching and consolidation run for real on made-up CAM++-sized vectors (the cosine is what
they read); the store tests write and read real Delta tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from store_rows import clip_rows, near, voices

from convoice.config import ConsolidationSettings
from convoice.models import labelling
from convoice.models.consolidate import ConsolidationError, Registry, plan_consolidation
from convoice.models.labelling import RecordingSpeakers
from convoice.models.registry import MatchDecision
from convoice.records import Speaker
from convoice.review.decisions import merge_into
from convoice.settings import Settings
from convoice.storage import Store
from convoice.storage.consolidation import consolidate_store
from convoice.storage.review_state import save_speakers
from convoice.storage.schema import speakers_to_table, with_speaker_buckets

MAN = [104.0, 108.0, 112.0]  # clip median F0s (Hz)
WOMAN = [210.0, 218.0, 226.0]  # an octave above: 11.8 semitones from 112 to 210


def _speakers(centroid: np.ndarray, n_clips: int) -> RecordingSpeakers:
    """One recording speaker holding ``n_clips`` clips."""
    return RecordingSpeakers(
        nodes=[(0, 0)],
        node_labels=np.zeros(1, np.int64),
        clip_labels=np.zeros(n_clips, np.int64),
        centroids=centroid[None, :].astype(np.float32),
        speech=np.array([3.0 * n_clips]),
    )


@pytest.mark.parametrize(("veto", "clip_f0", "matched"), [
    (8.0, WOMAN, False),  # an octave apart at cosine 0.96: never that identity
    (0.0, WOMAN, True),  # off: the cosine decides, as before
    (8.0, [float("nan")] * 3, True),  # a clip pitch unknown (too little voiced): no veto
    (8.0, [], True),  # a recording prepared before pitch: no veto
    (8.0, [120.0, 125.0, 130.0], True),  # the same man a little higher (1.2 semitones)
])  # fmt: skip
def test_a_voice_an_octave_from_a_known_one_is_never_matched_to_it(
    veto: float, clip_f0: list[float], matched: bool
) -> None:
    (man,) = voices(1)
    woman = near(man, 0.96, 1)
    scale = Settings().similarity_scale()
    speakers = _speakers(woman, 3)
    known = [(min(MAN), max(MAN))]
    allowed = labelling.speaker_pitch_allowed(speakers, clip_f0, known, veto)
    (match,) = labelling.identify(
        "rec", speakers, ["spk_man"], man[None, :], scale, [3], allowed
    )  # fmt: skip
    assert (match.speaker_id == "spk_man") is matched
    assert (match.decision == MatchDecision.MATCHED) is matched
    if not matched:
        assert match.decision == MatchDecision.NEW and match.runner_up == -1.0


def test_clip_pitches_must_match_the_clips() -> None:
    (v,) = voices(1)
    with pytest.raises(ValueError, match="2 clip pitches for 3 clips"):
        labelling.speaker_pitch_allowed(_speakers(v, 3), [100.0, 110.0], [(100.0, 110.0)], 8.0)


def _plan(pitch: list[tuple[float, float]], veto: float, cosine: float = 0.96) -> Registry:
    (a,) = voices(1)
    vectors = [a, near(a, cosine, 1), near(a, 0.9, 2)][: len(pitch)]
    return Registry(
        ids=[f"spk_{i}" for i in range(len(pitch))],
        sums=np.stack([v * 4 for v in vectors]).astype(np.float32),
        rank=[(1, -4 + i, "2025") for i in range(len(pitch))],
        recordings=[frozenset({f"r{i}"}) for i in range(len(pitch))],
        pitch=np.array(pitch, np.float64),
        pitch_veto=veto,
    )


def test_consolidation_never_merges_speakers_an_octave_apart() -> None:
    man, woman = (min(MAN), max(MAN)), (min(WOMAN), max(WOMAN))
    assert plan_consolidation(_plan([man, woman], 8.0), 0.6) == []
    assert len(plan_consolidation(_plan([man, woman], 0.0), 0.6)) == 1  # off: they merge
    unknown = (float("nan"), float("nan"))
    assert len(plan_consolidation(_plan([man, unknown], 8.0), 0.6)) == 1  # unknown: no veto


def test_a_merged_group_keeps_both_pitch_ranges() -> None:
    # 0 (a man, unknown pitch for the plan of 2) merges with 2 first (closest); the group
    # then holds 2's range, an octave from 1: 1 may not join it, however alike.
    unknown = (float("nan"), float("nan"))
    woman = (min(WOMAN), max(WOMAN))
    reg = _plan([unknown, woman, (100.0, 110.0)], 8.0, cosine=0.8)
    merges = plan_consolidation(reg, 0.6)
    assert {(m.merged, m.kept) for m in merges} == {("spk_2", "spk_0")}


def test_a_bad_pitch_shape_is_refused() -> None:
    reg = _plan([(100.0, 110.0), (200.0, 210.0)], 8.0)
    bad = Registry(reg.ids, reg.sums, reg.rank, reg.recordings, (), reg.pitch[:1], 8.0)
    with pytest.raises(ConsolidationError, match="pitch must be"):
        plan_consolidation(bad, 0.6)


def _speaker(sid: str, vector: np.ndarray, pitch: list[float], name: str = "") -> Speaker:
    s = Speaker(sid, (vector * 4).astype(np.float32), 4, 12.0, 1, "2025-01-01", "2025-01-01",
                name=name)  # fmt: skip
    s.widen_pitch(pitch)
    return s


def test_a_store_keeps_the_octave_pair_apart_and_a_persons_merge_wins(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    (a,) = voices(1, seed=4)
    store.tables.append("clips", clip_rows([("c1", "r1", "spk_man"), ("c2", "r2", "spk_woman")]))
    save_speakers(
        store, [_speaker("spk_man", a, MAN), _speaker("spk_woman", near(a, 0.96, 1), WOMAN)]
    )
    cfg = ConsolidationSettings(threshold_campplus=0.6)
    assert consolidate_store(store, cfg, pitch_veto=8.0).merges == []
    read = {s.speaker_id: s for s in store.speakers()}
    assert read["spk_man"].pitch == (104.0, 112.0) and read["spk_woman"].pitch == (210.0, 226.0)
    # a person says they are one: the merge is made whatever their pitch, and the survivor
    # holds both ranges (so the veto never splits what a person joined)
    joined = merge_into(read["spk_man"], read["spk_woman"], "2025-02-01")
    save_speakers(store, [joined], [read["spk_woman"]])
    (only,) = store.speakers()
    assert only.pitch == (104.0, 226.0) and only.n_clips == 8
    assert consolidate_store(store, cfg, pitch_veto=8.0).merges == []


def test_a_store_written_before_pitch_reads_and_grows_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    (a,) = voices(1, seed=5)
    old_clips = clip_rows([("c1", "r1", "spk_a")]).drop_columns(["f0_hz"])
    store.tables.append("clips", old_clips)
    old = with_speaker_buckets(speakers_to_table([_speaker("spk_a", a, [])]))
    store.tables.append("speakers", old.drop_columns(["f0_low_hz", "f0_high_hz"]))
    (read,) = store.speakers()
    assert np.isnan(read.f0_low_hz) and np.isnan(read.f0_high_hz)  # unknown: never vetoes
    assert store.clips()["f0_hz"].to_pylist() == [None]
    # the next recording's clips bring a pitch: the registry row and the clip rows take it
    read.absorb("r2", a[None, :], 3.0, "2025-03-01", [150.0])
    save_speakers(store, [read])
    new_clips = clip_rows([("c2", "r2", "spk_a")])
    new_clips = new_clips.set_column(
        new_clips.schema.get_field_index("f0_hz"), "f0_hz", pa.array([150.0], pa.float64())
    )
    store.tables.append("clips", new_clips)
    (grown,) = store.speakers()
    assert grown.pitch == (150.0, 150.0) and grown.n_recordings == 2
    assert sorted(store.clips()["f0_hz"].to_pylist(), key=str) == [150.0, None]
    # absorbing the same recording again (a resumed run) leaves the range as it was
    grown.absorb("r2", a[None, :], 3.0, "2025-03-01", [150.0])
    assert grown.pitch == (150.0, 150.0)


def test_a_clip_a_person_puts_under_a_speaker_widens_its_pitch_range() -> None:
    from convoice.records import Contribution, StoredClip
    from convoice.review.decisions import widen_by_people

    (a,) = voices(1, seed=6)
    man = _speaker("spk_man", a, MAN)
    machine = {
        "c_woman": StoredClip("c_woman", f0_hz=218.0),
        "c_unknown": StoredClip("c_unknown", f0_hz=None),
    }
    moves = [
        Contribution("c_woman", plus="spk_old", minus="spk_x"),
        Contribution("c_unknown", "spk_man"),
    ]
    widen_by_people([man], moves, machine, {"spk_old": "spk_man"})  # spk_old merged into spk_man
    assert man.pitch == (104.0, 218.0)
    # the veto then lets the woman's next recording match the id people gave her clip
    allowed = labelling.speaker_pitch_allowed(_speakers(a, 2), [215.0, 220.0], [man.pitch], 8.0)
    assert allowed is not None and bool(allowed[0, 0])
