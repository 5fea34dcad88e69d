"""The pure computations: chunk planning, turns, clip cutting, clustering, matching, routing."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from convoice.config import RoutingSettings
from convoice.models.clustering import b_cubed, cannot_link, cluster_nodes, normalize
from convoice.models.registry import MatchDecision, match_speakers
from convoice.models.routing import SpeakerEvidence, compression_ratio, max_ngram_repeats, route
from convoice.models.segmentation import (
    Chunk,
    ChunkSegmentation,
    LocalTurn,
    cut_clips,
    local_turns,
    overlap_regions,
    plan_chunks,
)
from convoice.records import (
    ClipStatus,
    LabelStatus,
    Region,
    ReviewReason,
    Speaker,
    Transcript,
    Word,
)

STEP = 0.02


def _segmentation(
    rows: list[tuple[float, float, int]], duration: float = 10.0
) -> ChunkSegmentation:
    n = int(duration / STEP)
    act = np.zeros((n, 3), dtype=bool)
    for start, end, k in rows:
        act[int(start / STEP) : int(end / STEP), k] = True
    return ChunkSegmentation(Chunk(0.0, duration, index=0), act, STEP / 2, STEP)


def test_chunks_are_short_cut_in_pauses_and_cover_all_speech() -> None:
    speech = [Region(0.5, 4.0), Region(4.3, 9.0), Region(9.4, 12.0), Region(20.0, 33.0)]
    envelope = np.ones(4000, dtype=np.float32)
    envelope[2700:2710] = 0.0  # a quiet spot at 27.0-27.1 s inside the long region
    chunks = plan_chunks(speech, 40.0, envelope)
    assert all(c.duration <= 10.0 + 1e-9 for c in chunks)
    for region in speech:  # every second of speech is inside some chunk
        for t in np.arange(region.start, region.end, 0.05):
            assert any(c.start <= t <= c.end for c in chunks), t
    for a, b in itertools.pairwise(chunks):
        assert a.end <= b.start + 1e-9
    boundaries = [c.end for c in chunks[:-1]]
    assert any(abs(b - 27.0) < 0.2 for b in boundaries)  # the long region split where it is quiet
    for b in boundaries:  # otherwise boundaries fall in silence
        inside = [r for r in speech if r.start + 0.01 < b < r.end - 0.01]
        assert not inside or abs(b - 27.0) < 0.2


def test_local_turns_split_at_other_speakers_and_keep_pauses_inside() -> None:
    seg = _segmentation([(0.0, 2.0, 0), (2.3, 4.0, 0), (4.0, 6.0, 1), (6.5, 8.0, 0), (7.5, 8.5, 1)])
    turns = local_turns(seg)
    a = [t for t in turns if t.local == 0]
    assert len(a) == 2  # speaker 1 talked in between
    assert len(a[0].pieces) == 2  # the 0.3 s silence stays inside the turn as a pause
    assert a[0].room_after == pytest.approx(0.0, abs=0.05)  # speaker 1 starts right away
    assert all(p.end <= 7.5 + STEP for t in a for p in t.pieces)  # no overlap in a turn
    overlaps = overlap_regions(seg)
    assert len(overlaps) == 1 and overlaps[0].start == pytest.approx(7.5, abs=0.03)


def test_clips_are_cut_only_in_pauses_and_respect_limits() -> None:
    pieces = tuple(Region(s, s + 1.5) for s in np.arange(0.0, 20.0, 1.8))  # 0.3 s pauses
    turn = LocalTurn(0, 0, pieces, room_before=1.0, room_after=1.0)
    clips = cut_clips(turn, min_s=1.0, max_s=8.0, min_pause_s=0.2, pad_s=0.05)
    assert clips
    for clip in clips:
        assert 1.0 <= clip.duration <= 8.0 + 0.1
        for p in pieces:  # a clip never cuts through a piece of speech
            assert not (p.start < clip.start < p.end) and not (p.start < clip.end < p.end)


def test_speech_longer_than_max_without_a_pause_is_dropped_not_cut() -> None:
    turn = LocalTurn(0, 0, (Region(0.0, 9.5),))
    assert cut_clips(turn, 1.0, 8.0, 0.2, 0.05) == []


def test_a_speakers_short_pauses_are_their_speech_in_the_timeline() -> None:
    """The DER timeline joins one speaker's stretches across a pause under the gap (whoever
    else talks in it, or with ``lone`` only when nobody does) and across their own overlaps; a
    longer pause and another speaker's stretches stay apart; 0 s joins only what overlaps."""
    from convoice.models.labelling import bridge_pauses

    turns = [(0.0, 1.0, "S0"), (1.3, 2.0, "S0"), (1.1, 1.2, "S1"), (2.4, 3.0, "S0")]
    turns += [(1.25, 1.5, "S1"), (1.4, 1.45, "S1")]
    assert bridge_pauses(turns, 0.5) == [(0.0, 3.0, "S0"), (1.1, 1.5, "S1")]
    assert bridge_pauses(turns, 0.6) == bridge_pauses(turns, 0.5)
    assert bridge_pauses(turns, 0.35) == [(0.0, 2.0, "S0"), (1.1, 1.5, "S1"), (2.4, 3.0, "S0")]
    assert bridge_pauses(turns, 0.3) == [
        (0.0, 1.0, "S0"), (1.1, 1.5, "S1"), (1.3, 2.0, "S0"), (2.4, 3.0, "S0"),
    ]  # fmt: skip
    assert (1.1, 1.2, "S1") in bridge_pauses(turns, 0.0)
    assert (1.25, 1.5, "S1") in bridge_pauses(turns, 0.0)  # (1.4, 1.45) lies inside it
    assert bridge_pauses([], 0.5) == []
    # only lone pauses: S1 talks in S0's first pause (a turn change), nobody in its second;
    # S1's own overlapping stretches still join
    assert bridge_pauses(turns, 0.5, lone=True) == [
        (0.0, 1.0, "S0"), (1.1, 1.5, "S1"), (1.3, 3.0, "S0"),
    ]  # fmt: skip
    assert bridge_pauses(turns, 0.35, lone=True) == bridge_pauses(turns, 0.3)
    with pytest.raises(ValueError, match="shorter than 0"):
        bridge_pauses(turns, -0.1)


def test_clustering_never_joins_speakers_of_one_chunk() -> None:
    rng = np.random.default_rng(0)
    voice = normalize(rng.normal(size=(1, 256)).astype(np.float32))
    # two nodes of one chunk with near-identical voices: cannot-link must keep them apart
    emb = normalize(voice.repeat(3, axis=0) + 0.01 * rng.normal(size=(3, 256)).astype(np.float32))
    result = cluster_nodes(emb, np.ones(3), np.array([0, 0, 1]), threshold=0.5)
    assert result.labels[0] != result.labels[1]
    assert result.num_clusters == 2


def test_clips_of_two_local_speakers_of_one_chunk_are_never_joined() -> None:
    """Clips as nodes: the chunk's two local speakers stay apart (cannot-link), but two
    clips of ONE local speaker whose voices differ may part (no constraint between them)."""
    rng = np.random.default_rng(3)
    a, b = normalize(rng.normal(size=(2, 256)).astype(np.float32))
    noise = 0.01 * rng.normal(size=(4, 256)).astype(np.float32)
    emb = normalize(np.stack([a, a, b, b]) + noise)  # clip 1 (local 1) sounds like clip 0
    groups, local = np.array([0, 0, 1, 0]), np.array([0, 1, 1, 0])
    result = cluster_nodes(emb, np.ones(4) * 5, groups, threshold=0.5, speakers=local)
    assert result.labels[0] != result.labels[1]  # one chunk, two local speakers
    assert result.labels[0] != result.labels[3]  # one local speaker, two voices: split
    assert result.labels[2] == result.labels[3]  # the same voice across chunks
    # as whole local speakers (no ``speakers``) every node of chunk 0 is kept apart
    whole = cluster_nodes(emb, np.ones(4) * 5, groups, threshold=0.5)
    assert len(set(whole.labels[[0, 1, 3]].tolist())) == 3
    with pytest.raises(ValueError, match="local speakers"):
        cannot_link(groups, local[:2])


def test_clustering_groups_the_same_voice_across_chunks() -> None:
    rng = np.random.default_rng(1)
    voices = normalize(rng.normal(size=(3, 256)).astype(np.float32))
    truth = [0, 1, 0, 2, 1, 0, 2]
    noisy = normalize(voices[truth] + 0.02 * rng.normal(size=(7, 256)).astype(np.float32))
    result = cluster_nodes(noisy, np.ones(7) * 5, np.arange(7), threshold=0.7)
    _, _, f1 = b_cubed([str(t) for t in truth], [str(x) for x in result.labels])
    assert f1 == pytest.approx(1.0)


def _whole_matrix_linkage(
    emb: np.ndarray, forbid: np.ndarray, threshold: float, max_clusters: int
) -> np.ndarray:
    """The linkage as it was written first: mask the whole matrix at every merge (O(n^3))."""
    n = emb.shape[0]
    sims = (emb @ emb.T).astype(np.float64)
    forbid = forbid.copy()
    np.fill_diagonal(forbid, True)
    sizes, alive, labels, clusters = np.ones(n), np.ones(n, bool), np.arange(n), n
    while clusters > 1:
        masked = np.where(forbid | ~alive[None, :] | ~alive[:, None], -np.inf, sims)
        a, b = divmod(int(np.argmax(masked)), n)
        if not np.isfinite(masked[a, b]) or (masked[a, b] < threshold and clusters <= max_clusters):
            break
        sims[a] = (sizes[a] * sims[a] + sizes[b] * sims[b]) / (sizes[a] + sizes[b])
        sims[:, a] = sims[a]
        forbid[a] |= forbid[b]
        forbid[:, a] = forbid[a]
        sizes[a] += sizes[b]
        alive[b] = False
        labels[labels == b] = a
        clusters -= 1
    return np.unique(labels, return_inverse=True)[1]


@pytest.mark.parametrize("seed", range(40))
def test_linkage_merges_as_the_whole_matrix_argmax_does(seed: int) -> None:
    """The row-best linkage picks every pair the whole-matrix argmax picks, ties included
    (repeated embeddings tie exactly), with and without clips' local speakers."""
    from convoice.models.clustering import _constrained_average_linkage

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 90))
    centres = rng.normal(size=(int(rng.integers(1, 6)), 8))
    x = centres[rng.integers(len(centres), size=n)] + rng.normal(size=(n, 8)) * rng.uniform(
        0.1, 1.5
    )
    if seed % 3 == 0:  # a handful of distinct voices, each repeated: exact ties everywhere
        x = np.round(centres[rng.integers(len(centres), size=n)])
    emb = normalize(x.astype(np.float32))
    groups = rng.integers(0, max(1, n // 3), size=n)
    forbid = cannot_link(groups, rng.integers(0, 3, size=n) if seed % 2 else None)
    threshold, most = float(rng.uniform(-0.2, 0.9)), int(rng.integers(1, 8))
    got = _constrained_average_linkage(emb, forbid, threshold, most)
    np.testing.assert_array_equal(got, _whole_matrix_linkage(emb, forbid, threshold, most))


def test_linkage_of_a_dense_three_hours_takes_seconds() -> None:
    """2,430 clips (three hours of dense speech) cluster in seconds (the whole-matrix
    argmax took about a minute of CPU here)."""
    import time

    rng = np.random.default_rng(5)
    n = 2430
    centres = rng.normal(size=(4, 192))
    emb = normalize(
        (centres[rng.integers(4, size=n)] + rng.normal(size=(n, 192))).astype(np.float32)
    )
    groups, local = np.arange(n) // 2, np.arange(n) % 2
    started = time.process_time()
    result = cluster_nodes(emb, np.ones(n), groups, 0.3, 12, 5.0, speakers=local)
    assert time.process_time() - started < 15.0
    assert result.labels.shape == (n,) and result.num_clusters >= 4


def test_b_cubed_of_a_split_cluster() -> None:
    p, r, f1 = b_cubed(["a", "a", "b", "b"], ["x", "y", "z", "z"])
    assert p == 1.0 and r == pytest.approx(0.75) and 0.8 < f1 < 0.9


def test_matching_is_one_to_one_and_says_new_or_uncertain() -> None:
    rng = np.random.default_rng(2)
    known = normalize(rng.normal(size=(2, 256)).astype(np.float32))
    stranger = normalize(rng.normal(size=(1, 256)).astype(np.float32))
    mine = np.concatenate([known[[1]], known[[1]] * 0.99 + 0.01, stranger])
    matches = match_speakers("rec", normalize(mine), ["spk_a", "spk_b"], known, 0.8, 0.7, 0.05)
    assert matches[0].speaker_id == "spk_b" and matches[0].decision == MatchDecision.MATCHED
    assert matches[1].speaker_id != "spk_b"  # one-to-one: a second copy cannot take spk_b
    assert matches[2].decision == MatchDecision.NEW
    again = match_speakers("rec", normalize(mine), ["spk_a", "spk_b"], known, 0.8, 0.7, 0.05)
    assert [m.speaker_id for m in again] == [m.speaker_id for m in matches]  # deterministic ids


def test_speaker_absorb_is_idempotent_per_recording() -> None:
    s = Speaker("spk", np.zeros(4, np.float32), 0, 0.0, 0, "t", "t")
    e = np.eye(4, dtype=np.float32)[:2]
    s.absorb("rec1", e, 3.0, "t1")
    s.absorb("rec1", e, 3.0, "t2")  # a resumed run absorbs the same recording again
    assert s.n_clips == 2 and s.n_recordings == 1 and s.total_duration == 3.0
    s.absorb("rec2", e[:1], 1.0, "t3")
    assert s.n_clips == 3 and s.n_recordings == 2


def _transcript(text: str, probs: list[float]) -> Transcript:
    words = tuple(
        Word(f" {w}", i * 0.3, i * 0.3 + 0.25, p)
        for i, (w, p) in enumerate(zip(text.split(), probs, strict=True))
    )
    return Transcript(text, "en", 0.99, words, -0.2, 1.2, 0.01)


def test_routing_accepts_a_clean_clip_and_explains_a_doubtful_one() -> None:
    cfg = RoutingSettings()
    sure = SpeakerEvidence(0.9, 0.5, 1.0)
    good = _transcript("the cat sat on the mat today", [0.95] * 7)
    assert route(sure, good, 3.0, False, cfg).status == ClipStatus.ACCEPTED
    shaky = _transcript("the cat sat on the mat today", [0.95, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9])
    decision = route(SpeakerEvidence(0.7, 0.68, 1.0), shaky, 3.0, True, cfg)
    assert decision.status == ClipStatus.REVIEW
    assert {
        ReviewReason.UNCERTAIN_SPEAKER,
        ReviewReason.OVERLAP_NEARBY,
        ReviewReason.LOW_WORD_PROBABILITY,
    } <= set(decision.reasons)


def test_confident_repetition_loop_is_flagged_as_hallucination() -> None:
    loop = "thank you for watching " * 6
    t = _transcript(loop.strip(), [0.97] * 24)
    assert max_ngram_repeats(loop.split()) == 6
    decision = route(SpeakerEvidence(0.9, -1.0, 1.0), t, 8.0, False, RoutingSettings())
    assert ReviewReason.LIKELY_HALLUCINATION in decision.reasons


def test_a_clip_whose_words_came_from_a_looping_window_is_flagged() -> None:
    """Packed clips share Whisper's windows: a loop that began in one spills into the next
    clip, whose own share of it can be too short to compress (seen on the tuning half: "are
    coming and Yankee down here. They are coming and Yankee down here." accepted at 0.95)."""
    text = "are coming and yankee down here they are coming and yankee down here they"
    spilled = replace(_transcript(text, [0.95] * len(text.split())), compression_ratio=11.27)
    assert compression_ratio(text) < 2.4 and max_ngram_repeats(text.split()) == 2
    decision = route(SpeakerEvidence(0.9, -1.0, 1.0), spilled, 4.9, False, RoutingSettings())
    assert decision.reasons == (ReviewReason.LIKELY_HALLUCINATION,)
    plain = replace(
        spilled, compression_ratio=1.9
    )  # the same words from a segment that did not loop
    assert (
        route(SpeakerEvidence(0.9, -1.0, 1.0), plain, 4.9, False, RoutingSettings()).reasons == ()
    )


def test_words_that_cannot_fit_the_clip_are_flagged() -> None:
    t = _transcript("one two three four five six seven eight nine ten", [0.9] * 10)
    decision = route(SpeakerEvidence(0.9, -1.0, 1.0), t, 1.0, False, RoutingSettings())
    assert ReviewReason.SPEAKING_RATE in decision.reasons


def test_a_clip_whose_first_words_went_to_its_neighbour_is_flagged() -> None:
    """Seen on the tuning half: "Our garden is full of bees ..." heard as "is full of bees
    ...", Whisper's first word 0.59 s into a clip cut 0.05 s before its speech (the packed
    clip before it held "Our garden")."""
    heard = _transcript("is full of bees whenever the lavender blooms", [0.97] * 8)
    late = replace(heard, words=tuple(replace(w, start=w.start + 0.59) for w in heard.words))
    decision = route(SpeakerEvidence(0.9, -1.0, 1.0), late, 3.0, False, RoutingSettings())
    assert decision.reasons == (ReviewReason.WORDS_MISSING,)
    assert decision.transcript_status == LabelStatus.REVIEW
    assert decision.speaker_status == LabelStatus.ACCEPTED  # the speaker is not in doubt
    sure = SpeakerEvidence(0.9, -1.0, 1.0)
    assert route(sure, heard, 3.0, False, RoutingSettings()).reasons == ()
    assert route(sure, late, 3.0, False, RoutingSettings(max_first_word_s=0.0)).reasons == ()


def test_word_error_rate_counts_the_words_of_every_script() -> None:
    from convoice.models.metrics import normalize_words, wer_count

    assert normalize_words("Colour-coded, Straße! привет_мир") == [
        "color",
        "coded",
        "straße",
        "привет",
        "мир",
    ]
    assert wer_count("привет мир", "пока мир").errors == 1  # was 0 words: nothing scored


def test_a_cut_by_sample_index_is_the_same_samples_everywhere() -> None:
    """Concatenated waves cut again at their own offsets come back whole: ``int(t * 16000)``
    landed a sample early at 16016 samples (1.001 s), and a clip's embedding was then not
    that of its audio."""
    from convoice.models.embed import _region_wave
    from convoice.records import SAMPLE_RATE, sample_index
    from convoice.training.encoder import wave_regions

    rng = np.random.default_rng(0)
    waves = [rng.normal(size=n).astype(np.float32) for n in (16016, 16000, 8017, 16048)]
    whole = np.concatenate(waves)
    for wave, region in zip(waves, wave_regions(waves), strict=True):
        assert np.array_equal(_region_wave(whole, region), wave)
    assert all(sample_index(n / SAMPLE_RATE) == n for n in range(0, 200_000, 7))


def test_clip_regions_are_whole_milliseconds() -> None:
    """A clip's region is what its row, id and released audio give (times to 1 ms)."""
    pieces = (Region(0.123456, 1.987654), Region(2.3333333, 3.7777777))
    turn = LocalTurn(0, 0, pieces, room_before=0.31, room_after=0.2711)
    clips = cut_clips(turn, min_s=1.0, max_s=8.0, min_pause_s=0.2, pad_s=0.05)
    assert clips
    for clip in clips:
        assert clip.start == round(clip.start, 3) and clip.end == round(clip.end, 3)


def test_a_short_chunk_is_seen_with_the_audio_after_it() -> None:
    from convoice.models.diarize import context_window

    assert context_window(Chunk(3.0, 7.0), 30.0) == Region(3.0, 13.0)
    assert context_window(Chunk(25.0, 29.0), 30.0) == Region(20.0, 30.0)  # the recording ends
    assert context_window(Chunk(1.0, 5.0), 8.0) == Region(0.0, 8.0)  # shorter than a window
    assert context_window(Chunk(10.0, 20.0), 40.0) == Region(10.0, 20.0)  # a full window


def test_a_second_voice_the_model_half_heard_marks_a_clip_two_voices() -> None:
    """The model gave speaker 0 a probability of talking at once with another, under its hard
    decision, inside speaker 0's turn: the clip is cut as before, but holds two voices when
    that probability, averaged over the clip, reaches [clips] two_voice_probability (0: off)."""
    from dataclasses import replace

    from convoice.config import ClipSettings, DiarizationSettings
    from convoice.models.diarize import assemble

    seg = _segmentation([(0.5, 4.0, 0), (5.0, 8.0, 1)])
    together = np.zeros(seg.activity.shape, np.float32)
    together[int(2.0 / STEP) : int(3.0 / STEP), 0] = 0.45  # 1 s of a 3.6 s clip: mean 0.125
    half_heard = replace(seg, together=together)
    for bar, expected in ((0.09, True), (0.2, False), (0.0, False)):
        cfg = replace(ClipSettings(), two_voice_probability=bar)
        out = assemble([Region(0.5, 8.0)], [half_heard], DiarizationSettings(), cfg)
        first = next(c for c in out.clips if c.region.start < 1.0)
        assert first.other_voice == pytest.approx(0.125, abs=0.01)
        assert first.two_voices is expected
        assert not next(c for c in out.clips if c.region.start > 4.5).two_voices


def test_the_model_doubting_which_local_label_a_voice_is_does_not_make_two_voices() -> None:
    """Tuning half: the model often gives one voice's whole chunk a second local label at a
    steady 0.15-0.45 ("0 or 1 talks"); single-voice clips were held as two voices for it. Only
    the probability that another label talks at the same time ("0 and 1") counts."""
    from dataclasses import replace

    from convoice.config import ClipSettings, DiarizationSettings
    from convoice.models.diarize import Segmenter, assemble, powerset_mapping

    mapping = powerset_mapping(3, 2)  # {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}
    n = int(10.0 / STEP)
    doubt = np.full((n, len(mapping)), 1e-4, np.float32)
    doubt[:, 0] = 1.0  # silence ...
    speech = slice(int(0.5 / STEP), int(6.0 / STEP))
    doubt[speech, 0], doubt[speech, 1], doubt[speech, 2] = 1e-4, 0.65, 0.35  # ... then 0 or 1
    joined = doubt.copy()
    second = slice(int(2.0 / STEP), int(3.5 / STEP))  # 1.5 s of "0 and 1", under the hard
    joined[second, 1], joined[second, 2], joined[second, 4] = 0.5, 0.1, 0.4  # decision ("0")
    segmenter = Segmenter(lambda b: b, STEP / 2, STEP, 3, 2)
    for probs, expected in ((doubt, False), (joined, True)):
        scores = np.log(probs / probs.sum(axis=1, keepdims=True))[None]
        active, soft = segmenter.decode(scores)
        both = segmenter.together(scores)[0]
        seg = replace(_segmentation([]), activity=active[0], together=both)
        out = assemble([Region(0.5, 6.0)], [seg], DiarizationSettings(), ClipSettings())
        (first,) = [c for c in out.clips if c.region.start < 2.0]
        assert first.region.start < 2.0 < 3.0 < first.region.end
        assert soft[0, int(4.0 / STEP), 1] == pytest.approx(0.35, abs=0.01)  # the doubt, as ever
        assert first.two_voices is expected, first.other_voice


def test_a_clip_next_to_an_overlap_is_trimmed_clear_of_it_or_held() -> None:
    """The other voice outlasts a detected overlap by a few frames: a clip beginning where an
    overlap ends begins [clips] overlap_margin_s later, one ending where an overlap starts
    ends that much earlier; one that would be left under min_s is kept and holds two voices."""
    from dataclasses import replace

    from convoice.config import ClipSettings, DiarizationSettings
    from convoice.models.diarize import assemble
    from convoice.models.segmentation import clear_of_overlaps

    overlaps = [Region(2.0, 2.5), Region(6.0, 6.4)]
    assert clear_of_overlaps(Region(2.5, 6.0), overlaps, 0.3, 1.0) == Region(2.8, 5.7)
    assert clear_of_overlaps(Region(2.6, 5.0), overlaps, 0.3, 1.0) == Region(2.8, 5.0)
    assert clear_of_overlaps(Region(3.0, 5.5), overlaps, 0.3, 1.0) == Region(3.0, 5.5)
    assert clear_of_overlaps(Region(2.5, 3.6), overlaps, 0.3, 1.0) is None  # 0.8 s left
    assert clear_of_overlaps(Region(2.5, 6.0), overlaps, 0.0, 1.0) == Region(2.5, 6.0)  # off

    # speaker 0 alone 0.5-3.0, both 3.0-3.5, speaker 1 alone 3.5-8.0 then 8.0-9.1 after a pause
    seg = _segmentation([(0.5, 3.5, 0), (3.0, 7.6, 1), (8.0, 9.1, 1)])
    for margin in (0.0, 0.3):
        cfg = replace(ClipSettings(), overlap_margin_s=margin, two_voice_probability=0.0)
        out = assemble([Region(0.5, 9.1)], [seg], DiarizationSettings(), cfg)
        first, second = sorted(out.clips, key=lambda c: c.region.start)[:2]
        assert first.region.end == pytest.approx(3.0 - margin, abs=0.03)
        assert second.region.start == pytest.approx(3.5 + margin, abs=0.03)
        assert not first.two_voices and not second.two_voices
    short = _segmentation([(0.5, 3.5, 0), (3.0, 4.7, 1)])
    for margin, held in ((0.0, False), (0.3, True)):
        cfg = replace(ClipSettings(), overlap_margin_s=margin, two_voice_probability=0.0)
        out = assemble([Region(0.5, 4.7)], [short], DiarizationSettings(), cfg)
        last = max(out.clips, key=lambda c: c.region.start)
        assert last.region.start == pytest.approx(3.5, abs=0.03)  # kept as the turn gave it
        assert last.two_voices is held
