"""Speaker identity on CAM++: the embedder on real speech, two voices in one clip, old stores."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from convoice.config import ClipSettings, ConfigError, load_settings
from convoice.engines import loaders
from convoice.media.audio import Audio, decode
from convoice.models import embed
from convoice.models.diarize import ClipRegion
from convoice.models.labelling import two_voice_extra
from convoice.models.metrics import parse_rttm
from convoice.models.voices import flagged, two_voice_flags, voice_evidence
from convoice.records import Region, Speaker
from convoice.storage import Store
from convoice.synth.recordings import pyannote_sample
from convoice.training import encoder


def _sample_turns(piece_s: float = 1.5) -> tuple[np.ndarray, list[Region], list[str]]:
    """pyannote's real two-speaker sample cut into pieces of one voice (overlaps left out)."""
    wav, rttm = pyannote_sample()
    audio = decode(wav).samples
    turns = sorted(parse_rttm(Path(rttm).read_text(encoding="utf-8")))
    regions, speakers = [], []
    for start, end, speaker in turns:
        others = [(s, e) for s, e, who in turns if who != speaker and e > start and s < end]
        t = start
        while t + piece_s <= end:
            if not any(min(t + piece_s, e) > max(t, s) for s, e in others):
                regions.append(Region(t, t + piece_s))
                speakers.append(speaker)
                t += piece_s
            else:
                t += 0.1
    return audio, regions, speakers


def _gap(vectors: np.ndarray, speakers: list[str]) -> tuple[float, np.ndarray]:
    """Mean same-speaker minus mean cross-speaker cosine; each piece's own-minus-other mean."""
    sims = vectors @ vectors.T
    label = np.array(speakers)
    same = label[:, None] == label[None, :]
    off = ~np.eye(len(label), dtype=bool)
    per_piece = np.array(
        [sims[i, same[i] & off[i]].mean() - sims[i, ~same[i]].mean() for i in range(len(label))]
    )
    return float(sims[same & off].mean() - sims[~same].mean()), per_piece


def test_campplus_puts_each_real_speaker_closer_to_itself_than_to_the_other() -> None:
    """Pieces of 2.5 s of pyannote's real sample: every one nearer its own speaker."""
    audio, regions, speakers = _sample_turns(2.5)
    assert len(set(speakers)) == 2 and len(regions) >= 5
    found = embed.embed_regions_campplus(loaders.campplus_model(), audio, regions)
    assert found.vectors.shape == (len(regions), 192)
    assert np.allclose(np.linalg.norm(found.vectors, axis=1), 1.0, atol=1e-4)
    assert all(w.shape[1] == 192 and len(w) >= 1 for w in found.windows)
    gap, per_piece = _gap(found.vectors, speakers)
    assert gap > 0.2 and (per_piece > 0).all(), (gap, per_piece)
    resemblyzer, _ = _gap(embed.embed_regions(loaders.voice_encoder(), audio, regions), speakers)
    assert gap > 2 * resemblyzer  # why CAM++ identifies: a wider gap between the two people


def test_short_regions_get_no_campplus_embedding() -> None:
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    found = embed.embed_regions_campplus(loaders.campplus_model(), audio, [Region(0.0, 0.1)])
    assert not found.vectors.any() and found.windows[0].shape == (0, 192)


@pytest.fixture(scope="module")
def voices(tts_cache: Path) -> dict[str, list[np.ndarray]]:
    from convoice.synth.speech import synthesize

    texts = [
        "The river carried small boats past the old stone bridge.",
        "She painted the kitchen a bright shade of green last summer.",
        "Nobody expected the train to arrive so early in the morning.",
    ]
    return {v: [synthesize(v, t, tts_cache) for t in texts] for v in ("rms", "slt")}


def _laid_out(
    waves: list[np.ndarray], silences: list[int]
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """16 kHz ``waves`` end to end, each followed by its silence (samples), and each wave's
    (start, end) in seconds."""
    pieces = [x for w, n in zip(waves, silences, strict=True) for x in (w, np.zeros(n, np.float32))]
    edges = np.cumsum([0, *(len(x) for x in pieces)]) / 16000
    spans = [(float(edges[i]), float(edges[i + 1])) for i in range(0, len(pieces), 2)]
    return np.concatenate(pieces).astype(np.float32), spans


def test_a_clip_of_two_voices_joined_is_flagged_and_single_voices_are_not(voices) -> None:  # type: ignore[no-untyped-def]
    rms, slt = voices["rms"], voices["slt"]
    head = rms[2][: int(len(rms[2]) * 0.9)]
    tail = slt[2][: max(len(head) // 2, 16000)]  # main voice about 65 % of the clip
    pieces = [rms[0], rms[1], slt[0], slt[1], np.concatenate([head, tail]), rms[2], slt[2]]
    audio, spans = _laid_out(pieces, [0] * len(pieces))
    regions = [Region(a, b) for a, b in spans]
    found = embed.embed_regions_campplus(loaders.campplus_model(), audio, regions)
    centroids = np.stack([found.vectors[0] + found.vectors[1], found.vectors[2] + found.vectors[3]])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1, 0, 0, 1], dtype=np.int64)
    rule = load_settings(environ={}).identity.two_voice_rule()
    flags = two_voice_flags(found.windows, labels, centroids, rule)
    assert flags.tolist() == [False, False, False, False, True, False, False]
    alone = two_voice_flags(found.windows[4:5], labels[4:5], centroids[:1], rule)
    assert alone.tolist() == [True]  # the windows disagree even with no other speaker known
    evidence = voice_evidence(found.windows, labels, centroids)  # what a clip's extra keeps
    assert [flagged(e, rule) for e in evidence] == flags.tolist()
    assert evidence[4].switch > rule.switch_margin > max(e.switch for e in evidence[:4])
    region = ClipRegion(0, regions[4], False, 0.1, True, edge_overlap=True)
    kept = two_voice_extra(region, evidence[4])
    assert kept["two_voice_edge"] == 1.0
    assert kept["two_voice_switch"] == round(evidence[4].switch, 4)


def test_two_voices_of_one_engine_in_one_local_speaker_are_found_at_the_pause(
    tts_cache: Path,
) -> None:
    """espeak's English and German women (a tuning pair) given one local speaker, as the
    segmentation does: the clip's parts across the pause differ; one voice's do not. The
    pause rule is opt-in (``[identity] two_voice_pause_check``); off, the parts are not
    embedded at all."""
    from convoice.config import ClipSettings, DiarizationSettings
    from convoice.models.clip_embeddings import embed_recording
    from convoice.models.diarize import segmentation_from_turns
    from convoice.synth.speech import synthesize

    said = [
        ("espeak_f", "Nobody expected the train to arrive so early."),
        ("espeak_de_f", "Der Zug kam heute viel früher als erwartet an."),
        ("espeak_f", "She painted the kitchen bright green last summer."),
        ("espeak_f", "The river carried boats past the old stone bridge."),
    ]
    waves = [synthesize(voice, text, tts_cache) for voice, text in said]
    pause, gap = 6400, 32000  # 0.4 s, 2 s
    audio, spans = _laid_out(waves, [pause, gap, pause, gap])
    turns = [(a, b, "A" if k < 2 else "B") for k, (a, b) in enumerate(spans)]
    seg = segmentation_from_turns(turns, len(audio) / 16000, DiarizationSettings(), ClipSettings())
    assert len(seg.clips) == 2  # one clip per pair: two voices, then one voice twice
    vectors = embed_recording(
        audio, seg, loaders.voice_encoder(), "campplus", loaders.campplus_model()
    )
    default = load_settings(environ={}).identity
    assert not default.compares_parts and default.two_voice_rule().min_part_similarity == -1.0
    rule = replace(default, two_voice_pause_check=True).two_voice_rule()
    two, one = vectors.part_similarity
    assert two < rule.min_part_similarity <= one, (two, one)
    labels = np.zeros(2, dtype=np.int64)  # one recording speaker: no window is closer to another
    centroid = vectors.identity_clips.sum(axis=0, keepdims=True)
    centroid /= np.linalg.norm(centroid)
    flags = two_voice_flags(vectors.clip_windows, labels, centroid, rule, vectors.part_similarity)
    assert flags.tolist() == [True, False]
    unchecked = embed_recording(
        audio, seg, loaders.voice_encoder(), "campplus", loaders.campplus_model(), parts=False
    )
    assert unchecked.part_similarity == [] and unchecked.part_cut == []
    assert np.array_equal(unchecked.identity_clips, vectors.identity_clips)


def test_a_clip_whose_voice_changes_at_a_pause_is_cut_there_and_each_half_labelled(
    tts_cache: Path,
) -> None:
    """flite's rms and slt given one local speaker (as below), one clip of each voice after
    the other at a 0.4 s pause, then each voice alone twice: with
    ``[identity] two_voice_cut`` the first clip is cut inside that pause, each half is
    embedded as itself, and the halves join their own voices' speakers, none of them
    flagged; off, the clip stays whole and flagged."""
    from convoice.models.diarize import segmentation_from_turns
    from convoice.models.from_settings import own_speakers
    from convoice.synth.speech import synthesize
    from convoice.tasks import stages

    said = [
        ("rms", "Nobody expected the train to arrive so early."),
        ("slt", "She painted the kitchen bright green last summer."),
        ("rms", "The river carried boats past the old stone bridge."),
        ("slt", "We sat in the garden for the whole evening."),
        ("rms", "Tomorrow we will ride our bicycles into town."),
        ("slt", "The library closes early on public holidays."),
    ]
    waves = [synthesize(voice, text, tts_cache) for voice, text in said]
    pause, gap = 6400, 48000  # 0.4 s, 3 s
    audio, spans = _laid_out(waves, [pause] + [gap] * 5)
    change = (spans[0][1] + spans[1][0]) / 2  # the middle of the pause
    settings = load_settings(environ={})
    turns = [(a, b, "A") for a, b in spans]
    seg = segmentation_from_turns(turns, len(audio) / 16000, settings.diarization, ClipSettings())
    assert len(seg.clips) == 5 and {t.local for t in seg.turns} == {0}  # the first: two voices
    whole = stages.embed_and_cut(Audio(audio, 16000), seg, settings)
    flags = own_speakers(seg, whole[1], settings).two_voices
    assert whole[0] is seg and flags is not None and flags.tolist()[0]
    assert whole[1].part_similarity == []  # the pause rule is off: no parts embedded
    cutting = replace(settings, identity=replace(settings.identity, two_voice_cut=True))
    cut, vectors = stages.embed_and_cut(Audio(audio, 16000), seg, cutting)
    assert [c.region for c in cut.clips[2:]] == [c.region for c in seg.clips[1:]]
    first, second = cut.clips[0].region, cut.clips[1].region
    assert first.start == seg.clips[0].region.start and second.end == seg.clips[0].region.end
    assert first.end == second.start and abs(first.end - change) < 0.2, (first, change)
    alone = embed.embed_regions_campplus(loaders.campplus_model(), audio, [first, second])
    assert np.allclose(vectors.identity_clips[:2], alone.vectors, atol=1e-4)
    assert len(vectors.clips) == len(vectors.clip_windows) == len(vectors.part_cut) == 6
    speakers = own_speakers(cut, vectors, cutting)
    labels = speakers.clip_labels.tolist()
    voice = [v for v, _ in said]
    by_voice = {v: {x for x, w in zip(labels, voice, strict=True) if w == v} for v in voice}
    assert speakers.num_speakers == 2 and by_voice["rms"] != by_voice["slt"]
    assert all(len(labels) == 1 for labels in by_voice.values()), by_voice
    assert speakers.two_voices is not None and not speakers.two_voices.any()


def test_two_voices_given_one_local_speaker_become_two_recording_speakers(
    tts_cache: Path,
) -> None:
    """flite's rms and slt, three sentences each, taking turns, all given ONE local
    speaker of one chunk, as the segmentation model sometimes does: clustered
    clip by clip (the default), they become two speakers, in the clips and in the
    diarization; clustered as whole local speakers (the former engine), one."""
    from convoice.config import ClipSettings
    from convoice.models.clip_embeddings import embed_recording
    from convoice.models.diarize import segmentation_from_turns
    from convoice.models.from_settings import own_speakers
    from convoice.models.labelling import diarization_output
    from convoice.synth.speech import synthesize

    texts = [
        "Nobody expected the train to arrive so early.",
        "She painted the kitchen bright green last summer.",
        "The river carried boats past the old stone bridge.",
    ]
    said = [(v, t) for t in texts for v in ("rms", "slt")]  # taking turns
    gap = 48000  # 3 s: each sentence its own clip (two exceed 8 s)
    waves = [synthesize(voice, text, tts_cache) for voice, text in said]
    audio, spans = _laid_out(waves, [gap] * len(waves))
    turns = [(a, b, "A") for a, b in spans]
    settings = load_settings(environ={})
    seg = segmentation_from_turns(turns, len(audio) / 16000, settings.diarization, ClipSettings())
    assert len(seg.clips) == 6 and len(seg.chunks) == 1 and {t.local for t in seg.turns} == {0}
    vectors = embed_recording(
        audio, seg, loaders.voice_encoder(), "campplus", loaders.campplus_model()
    )
    voice = [said[i][0] for i in range(6)]  # clips in time order, one per sentence
    speakers = own_speakers(seg, vectors, settings)
    assert speakers.num_speakers == 2
    labels = speakers.clip_labels.tolist()
    by_voice = {v: {x for x, w in zip(labels, voice, strict=True) if w == v} for v in voice}
    assert len(by_voice["rms"]) == len(by_voice["slt"]) == 1, by_voice
    assert by_voice["rms"] != by_voice["slt"]
    timeline = diarization_output(seg, speakers)
    assert len({label for *_, label in timeline}) == 2
    for (start, end, _), who in zip(turns, voice, strict=True):
        inside = {label for s, e, label in timeline if s < end and e > start}
        assert inside == {f"S{next(iter(by_voice[who]))}"}, (start, inside)
    whole = replace(settings, diarization=replace(settings.diarization, cluster_unit="node"))
    assert own_speakers(seg, vectors, whole).num_speakers == 1


def test_an_old_store_keeps_resemblyzer_identity(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(environ={}, home=str(tmp_path))
    store = Store.open(settings)
    assert encoder.pin_identity(settings, store).identity.encoder == "campplus"  # empty store
    vector = np.ones(256, dtype=np.float32)
    store._upsert_speakers([Speaker("spk_old", vector, 1, 2.0, 1, "t", "t")])
    pinned = encoder.pin_identity(settings, store)
    assert pinned.identity.encoder == "resemblyzer"
    assert pinned.similarity_scale().match_threshold == settings.registry.match_threshold
    assert "built with 'resemblyzer'" in caplog.text


def test_an_unknown_identity_encoder_is_a_clear_error() -> None:
    settings = load_settings(environ={})
    bad = replace(settings, identity=replace(settings.identity, encoder="ecapa"))
    with pytest.raises(ConfigError, match="'campplus' or 'resemblyzer'"):
        bad.similarity_scale()


def test_clip_rows_written_before_campplus_still_read(tmp_path: Path) -> None:
    """An old clips table (no speaker_embedding column) reads with nulls; d-vectors identify."""
    from convoice.records import Clip, Provenance, identity_vector
    from convoice.storage.schema import clips_to_table

    store = Store(str(tmp_path))
    clip = Clip("c1", "r1", 0.0, 2.0, "S0", np.full(256, 1 / 16, dtype=np.float32))
    old = clips_to_table([clip], Provenance("old", {}, {}), "run", "t").drop_columns(
        ["speaker_embedding"]
    )
    store.tables.append("clips", old)
    row = store.clips().to_pylist()[0]
    assert row["speaker_embedding"] is None
    assert identity_vector(row) == row["embedding"] and len(row["embedding"]) == 256
    clip.speaker_embedding = np.ones(192, dtype=np.float32)
    assert clip.identity_vector.shape == (192,)


def test_the_identity_vector_follows_the_registry_space() -> None:
    """After a resemblyzer encoder round re-labels a CAM++ store, its registry is 256-d again."""
    from convoice.records import identity_vector

    row = {"embedding": [0.0] * 256, "speaker_embedding": [0.0] * 192}
    assert len(identity_vector(row)) == 192
    assert len(identity_vector(row, 192)) == 192
    assert len(identity_vector(row, 256)) == 256


def test_cluster_unit_is_a_checked_enum_with_the_same_config_syntax(tmp_path: Path) -> None:
    from convoice.config import ClusterUnit
    from convoice.models.labelling import speakers_of_recording

    config = tmp_path / "node.toml"
    config.write_text('[diarization]\ncluster_unit = "node"\n')
    assert load_settings(config, environ={}, home=str(tmp_path)).diarization.cluster_unit == "node"
    default = load_settings(environ={}, home=str(tmp_path)).diarization
    assert default.cluster_unit == ClusterUnit.CLIP
    assert [str(u) for u in ClusterUnit] == ["clip", "node"]
    no_vectors = np.zeros((0, 4), np.float32)
    with pytest.raises(ValueError, match="cluster unit must be 'node' or 'clip', not 'voice'"):
        speakers_of_recording(
            None,  # type: ignore[arg-type]  # checked before the segmentation is read
            no_vectors, no_vectors, load_settings(environ={}).similarity_scale(), 4, unit="voice",
        )  # fmt: skip
