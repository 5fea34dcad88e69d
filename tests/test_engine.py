"""The real models on real recordings: diarization, embeddings, transcription."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from convoice.config import load_settings
from convoice.engines import encoder_tally, loaders
from convoice.media.audio import decode
from convoice.models import asr, embed, labelling
from convoice.models.metrics import (
    WerCount,
    diarization_error_rate,
    diarization_errors,
    parse_rttm,
    wer_count,
)
from convoice.models.packing import pack
from convoice.records import Region
from convoice.synth.recordings import librivox_samples, pyannote_sample
from convoice.tasks import stages


@pytest.fixture(scope="module")
def settings():  # type: ignore[no-untyped-def]
    return load_settings(environ={})


def test_diarization_of_the_real_two_speaker_recording(settings) -> None:  # type: ignore[no-untyped-def]
    """pyannote's own sample (30 s, two people on the phone, overlaps): DER 6.0 % (6.8 % when
    short chunks were zero-padded instead of seen with the audio after them)."""
    wav, rttm = pyannote_sample()
    audio = decode(wav)
    seg = stages.segment.fn(audio, settings)
    assert all(c.duration <= 10.0 + 1e-6 for c in seg.chunks)
    vectors = stages.embed_speakers.fn(audio, seg)
    empty = np.zeros((0, 256), dtype=np.float32)
    speakers, matches = stages.identify.fn("sample", seg, vectors, [], empty, settings)
    assert speakers.num_speakers == 2 and len(matches) == 2
    der = diarization_error_rate(
        parse_rttm(Path(rttm).read_text(encoding="utf-8")),
        labelling.diarization_output(seg, speakers),
    )
    assert der <= 0.064, f"DER {der:.3f}"


def test_clips_of_the_real_recording_are_trimmed_clear_of_its_overlaps(settings) -> None:  # type: ignore[no-untyped-def]
    """pyannote's sample, two people on the phone: the model's overlaps end (start) a few
    frames before the reference's, so a clip cut right after (before) one began with the other
    person's last syllable (main voice 0.982 of 10.970-14.278 s). Each clip within 0.3 s of
    a detected overlap is now trimmed clear of it and holds one voice in the reference, or,
    too short to trim (14.716-15.848 s), is kept with its speaker label held (two voices)."""
    from convoice.models.evaluation import RefTurn, main_voice_share

    wav, rttm = pyannote_sample()
    ref = [RefTurn(s, e, k, "") for s, e, k in parse_rttm(Path(rttm).read_text(encoding="utf-8"))]
    seg = stages.segment.fn(decode(wav), settings)
    assert len(seg.overlaps) >= 3

    def gap(clip: Region) -> float:  # to the closest detected overlap outside the clip
        return min(min(abs(clip.start - o.end), abs(o.start - clip.end)) for o in seg.overlaps)

    beside = [c for c in seg.clips if gap(c.region) < 0.35]
    assert len(beside) >= 5
    for clip in beside:
        if clip.two_voices:
            continue
        assert gap(clip.region) >= 0.3 - 1e-3, clip
        share = main_voice_share({"start": clip.region.start, "end": clip.region.end}, ref)
        assert share == pytest.approx(1.0, abs=1e-3), clip
    held = [c for c in beside if c.two_voices and gap(c.region) < 0.3]
    assert [round(c.region.start, 1) for c in held] == [14.7]


def test_the_timeline_counts_a_speakers_short_lone_pauses_as_speech(settings) -> None:  # type: ignore[no-untyped-def]
    """The engine's diarization timeline, what DER scores, joins each speaker's stretches across
    pauses under ``[diarization] timeline_gap_s`` (0.5 s) in which nobody else talks
    (``timeline_gap_lone``): on the real sample it covers every second the segmentation's frames
    give, every short pause left holds the other person's speech, and it misses less of the
    reference than the frames; bridging every pause bridges those too (session 25's rule);
    ``timeline_gap_s = 0`` gives the frames as they are."""
    from dataclasses import replace

    from convoice.bench.quality import engine_der

    cfg = settings.diarization
    assert (cfg.timeline_gap_s, cfg.timeline_gap_lone) == (0.5, True)
    shaping = set(settings.model_settings()["diarization"])  # what shapes rows: not these
    assert not {"timeline_gap_s", "timeline_gap_lone"} & shaping
    wav, rttm = pyannote_sample()
    audio = decode(wav)
    seg = stages.segment.fn(audio, settings)
    vectors = stages.embed_speakers.fn(audio, seg, "", settings.identity.encoder)
    empty = np.zeros((0, 0), dtype=np.float32)
    speakers, _ = stages.identify.fn("sample", seg, vectors, [], empty, settings)
    frames = labelling.diarization_output(seg, speakers)
    timeline = labelling.diarization_output(seg, speakers, cfg.timeline_gap_s, lone=True)
    every = labelling.diarization_output(seg, speakers, cfg.timeline_gap_s)
    assert len(every) < len(timeline) < len(frames)
    for start, end, label in frames:
        assert any(s <= start and end <= e for s, e, lab in timeline if lab == label)
    for label in {lab for _, _, lab in timeline}:
        own = [(s, e) for s, e, lab in timeline if lab == label]
        others = [(s, e) for s, e, lab in timeline if lab != label]
        for a, b in itertools.pairwise(own):
            short = b[0] - a[1] < cfg.timeline_gap_s
            assert not short or any(s < b[0] and e > a[1] for s, e in others)
        own_every = [(s, e) for s, e, lab in every if lab == label]
        assert all(b[0] - a[1] >= cfg.timeline_gap_s for a, b in itertools.pairwise(own_every))
    reference = parse_rttm(Path(rttm).read_text(encoding="utf-8"))
    bridged, plain = diarization_errors(reference, timeline), diarization_errors(reference, frames)
    assert bridged.missed < plain.missed and bridged.speech_s == pytest.approx(plain.speech_s)
    assert engine_der(settings).missed == pytest.approx(bridged.missed)
    opted_out = replace(settings, diarization=replace(cfg, timeline_gap_s=0.0))
    assert engine_der(opted_out).missed == pytest.approx(plain.missed)


def test_diarization_errors_split_by_kind_and_add_up_by_speech(settings) -> None:  # type: ignore[no-untyped-def]
    """``convoice bench`` prints DER with its parts (``der_*_missed`` etc.): the parts of the
    engine's DER on the real sample add up to it, and recordings add up by their speech."""
    from convoice.bench.quality import der_figures, engine_der

    ref = parse_rttm(Path(pyannote_sample()[1]).read_text(encoding="utf-8"))
    assert diarization_errors(ref, ref).der == 0.0
    none = diarization_errors(ref, [])
    assert none.missed == none.der == 1.0 and none.false_alarm == none.confusion == 0.0
    one = diarization_errors(ref, [(s, e, "X") for s, e, _ in ref])  # both people as one
    assert one.confusion > 0.1 and one.missed == 0.0
    assert (none + diarization_errors(ref, ref)).missed == pytest.approx(0.5)
    engine = engine_der(settings)
    figures = der_figures("sample", engine)
    parts = [figures[f"der_sample_{k}"] for k in ("missed", "false_alarm", "confusion")]
    assert figures["der_sample"] == pytest.approx(sum(parts)) and min(parts) >= 0
    assert engine.speech_s == pytest.approx(none.speech_s)
    assert 0.0 < engine.der <= 0.064, f"DER {engine.der:.3f}"


def test_a_recording_where_the_engine_hears_no_speech_has_all_its_speech_missed(
    settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    import soundfile as sf

    from convoice.bench.quality import engine_diarization

    wav = tmp_path / "quiet.wav"
    sf.write(wav, np.zeros(5 * 16000, dtype=np.float32), 16000)
    errors = engine_diarization(settings, wav, [(1.0, 3.5, "A")])
    assert errors.missed == errors.der == 1.0 and errors.speech_s == pytest.approx(2.5)


def test_the_corpus_der_adds_up_its_episodes_and_names_media_it_cannot_read(
    settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from convoice.bench.quality import corpus_der, engine_diarization
    from convoice.synth.samples import Corpus, Episode, TruthTurn

    wav, rttm = pyannote_sample()
    ref = parse_rttm(Path(rttm).read_text(encoding="utf-8"))
    turns = tuple(TruthTurn(s, e, who, "") for s, e, who in ref)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not media at all")
    episodes = tuple(
        Episode(name, ("a", "b"), turns, 30.0, path, path)
        for name, path in (("one", Path(wav)), ("two", Path(wav)), ("broken", broken))
    )
    total, left_out = corpus_der(settings, Corpus(tmp_path, episodes))
    one = engine_diarization(settings, Path(wav), ref)
    assert total.speech_s == pytest.approx(2 * one.speech_s)
    assert total.der == pytest.approx(one.der) and total.missed == pytest.approx(one.missed)
    assert len(left_out) == 1 and left_out[0].startswith("broken.mp4: not in the corpus DER")


def test_the_vad_threshold_setting_reaches_the_speech_detector(settings) -> None:  # type: ignore[no-untyped-def]
    """pyannote's sample opens with a short, quiet turn (6.69-7.12 s) that 0.5 misses."""
    from dataclasses import replace

    audio = decode(pyannote_sample()[0])
    first = {}
    for threshold in (0.5, 0.35):
        cfg = replace(settings.diarization, vad_threshold=threshold)
        seg = stages.segment.fn(audio, replace(settings, diarization=cfg))
        first[threshold] = seg.speech[0].start
    assert first[0.5] > 7.3 and 6.5 < first[0.35] < 7.0, first


def test_embeddings_tell_voices_apart_and_hold_a_voice_together(tts_cache) -> None:  # type: ignore[no-untyped-def]
    from convoice.synth.speech import synthesize

    texts = ["The river carried small boats past the bridge.", "She painted the kitchen green."]
    clips = [synthesize(v, t, tts_cache) for v in ("rms", "slt") for t in texts]
    audio = np.concatenate(clips)
    regions, start = [], 0.0
    for c in clips:
        regions.append(Region(start, start + len(c) / 16000))
        start += len(c) / 16000
    vectors = embed.embed_regions(loaders.voice_encoder(), audio, regions)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    same = min(float(vectors[0] @ vectors[1]), float(vectors[2] @ vectors[3]))
    different = max(float(vectors[i] @ vectors[j]) for i in (0, 1) for j in (2, 3))
    assert same > 0.8 and different < same - 0.1


def test_packed_transcription_of_real_read_speech(settings) -> None:  # type: ignore[no-untyped-def]
    """LibriVox recordings (Debian pocketsphinx-testdata), packed into one window."""
    items = librivox_samples()
    pieces = [decode(path).samples for path, _ in items]
    audio = np.concatenate(pieces)
    regions, start = [], 0.0
    for p in pieces:
        regions.append(Region(start, start + len(p) / 16000))
        start += len(p) / 16000
    model = loaders.whisper_model()
    assert loaders.whisper_model("base") is model  # the default is loaded once per process
    before = encoder_tally.totals()
    out = asr.transcribe_clips(model, audio, regions, asr.AsrOptions(8, settings.asr.beam_size, ""))
    assert len(out) == len(items) and all(t is not None for t in out)
    # the encoder passes it counts (convoice bench --profile): a window per pack, a language
    # pass per clip (a clip under 3 s encoded as 3 s)
    counted = encoder_tally.since(before)
    speech = sum(r.duration for r in regions)
    assert counted["windows"][0] == len(pack(audio, regions).windows) >= 1
    assert counted["windows"][1] == pytest.approx(speech)
    # the windows (one batch of 8) encoded at the longest one's length, rounded up to a whole
    # second, not padded to 30 s
    windows = pack(audio, regions).windows
    longest = min(np.ceil(max(w.duration for w in windows) - 1e-9), 30.0)
    assert counted["encoded"] == (len(windows), pytest.approx(len(windows) * longest))
    assert "again" not in counted  # no window looped
    assert counted["language"][0] == len(regions)
    wanted = sum(max(r.duration, settings.asr.language_min_clip_s) for r in regions)
    assert counted["language"][1] == pytest.approx(wanted, abs=0.02 * len(regions))
    total = WerCount(0, 0)
    for (_, text), t, region in zip(items, out, regions, strict=True):
        assert t is not None and t.language == "en"
        assert all(0.0 <= w.start <= w.end <= region.duration for w in t.words)  # clip time
        assert [w.start for w in t.words] == sorted(w.start for w in t.words)
        total += wer_count(text, t.text)
    assert total.wer < 0.25, f"WER {total.wer:.3f} on LibriVox"


def test_a_window_that_loops_is_decoded_again_padded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A window whose words look like a repetition loop at its own length is decoded again
    padded to 30 s, and that answer is the one kept: with every window taken for a loop, the
    words are faster-whisper's own (every window padded), word for word."""
    from convoice.engines import whisper_windows

    items = librivox_samples()[:3]
    pieces = [decode(path).samples for path, _ in items]
    audio = np.concatenate(pieces)
    ends = np.cumsum([len(p) / 16000 for p in pieces])
    regions = [
        Region(float(e - len(p) / 16000), float(e)) for e, p in zip(ends, pieces, strict=True)
    ]
    model = loaders.whisper_model()
    padded = asr.transcribe_clips(
        model, audio, regions, asr.AsrOptions(language="en", own_length=False)
    )
    monkeypatch.setattr(whisper_windows, "LOOP_COMPRESSION_RATIO", -1.0)
    before = encoder_tally.totals()
    again = asr.transcribe_clips(model, audio, regions, asr.AsrOptions(language="en"))
    counted = encoder_tally.since(before)
    windows = len(pack(audio, regions).windows)
    assert counted["again"] == (windows, 30.0 * windows) and counted["encoded"][0] == windows
    assert counted["encoded"][1] < 30.0 * windows  # the first pass was at the windows' length
    assert again == padded and all(t is not None and t.words for t in again)


def test_windows_are_encoded_at_their_longest_whole_second() -> None:
    from convoice.engines.whisper_windows import looped, own_frames

    assert own_frames([3.2, 12.01], 100, 3000) == 1300
    assert own_frames([12.0], 100, 3000) == 1200 and own_frames([0.2], 100, 3000) == 100
    assert own_frames([29.5, 31.0], 100, 3000) == 3000
    with pytest.raises(ValueError, match="at least one window"):
        own_frames([], 100, 3000)
    words = {"compression_ratio": 1.3, "tokens": [1, 2, 3]}
    assert not looped([words, words], max_new_tokens=10)
    assert looped([words, {"compression_ratio": 3.1, "tokens": [4] * 40}], max_new_tokens=None)
    assert looped([words, words], max_new_tokens=6)  # the token budget used up
    assert not looped([], max_new_tokens=6)


def _random_clips(
    seed: int, shortest: float, longest: float, count: int, pause: float
) -> tuple[list[Region], np.ndarray]:
    """``count`` clips of random lengths, ``pause`` s apart, and silence for them."""
    lengths = np.random.default_rng(seed).uniform(shortest, longest, size=count)
    ends = np.cumsum(lengths + pause)
    regions = [Region(float(e - n), float(e)) for e, n in zip(ends, lengths, strict=True)]
    return regions, np.zeros(int(ends[-1] * 16000) + 1, dtype=np.float32)


def test_window_groups_cut_where_the_whole_pack_cuts_its_windows() -> None:
    """Each group of clips packs into the windows the whole pack has (whole windows per
    group, at most ``windows_per_group`` of them); the groups cover every clip in order."""
    from convoice.models.packing import pack, window_groups

    regions, samples = _random_clips(4, 0.5, 9.0, 300, 0.2)
    whole = pack(samples, regions)
    groups = window_groups(len(samples), regions, 4)
    assert groups[0][0] == 0 and groups[-1][1] == len(regions)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(groups))
    for lo, hi in groups:
        part = pack(samples, regions[lo:hi])
        assert len(part.windows) <= 4 and part.window_of == [
            w - whole.window_of[lo] for w in whole.window_of[lo:hi]
        ]
    assert len(groups) == -(-len(whole.windows) // 4)
    assert window_groups(len(samples), regions, 10_000) == [(0, len(regions))]


def test_pack_opens_a_window_only_for_a_clip_that_would_not_fit() -> None:
    """Every clip of a window, less the silence before it, ends within ``WINDOW_S`` of the
    window's start (or is its first clip), and the clip that opens the next window would
    not have: what
    :func:`window_of_lengths` decides from the clips' lengths alone."""
    from convoice.models.packing import GAP_S, WINDOW_S, pack, window_of_lengths
    from convoice.records import sample_index

    regions, samples = _random_clips(5, 0.3, 12.0, 200, 0.5)
    whole = pack(samples, regions)
    lengths = [len(samples[sample_index(r.start) : sample_index(r.end)]) / 16000 for r in regions]
    assert window_of_lengths(lengths) == whole.window_of
    assert max(whole.window_of) + 1 == len(whole.windows) > 40
    for i, (w, offset) in enumerate(zip(whole.window_of, whole.offsets, strict=True)):
        start = whole.windows[w].start
        opens = i == 0 or whole.window_of[i - 1] != w
        if not opens:
            assert offset - GAP_S + lengths[i] - start <= WINDOW_S + 1e-9
        elif i:  # it did not fit the window before
            before = whole.windows[w - 1].start
            assert offset - GAP_S + lengths[i] - before > WINDOW_S - 1e-9


def test_transcription_in_groups_of_windows_reads_the_same_words(  # type: ignore[no-untyped-def]
    settings, tmp_path, monkeypatch
) -> None:
    """LibriVox clips read from a WAV range by range, one window per Whisper call against
    all at once: the same words in every clip."""
    import soundfile

    from convoice.media.audio import WavSamples

    items = librivox_samples()
    pieces = [decode(path).samples for path, _ in items] * 2
    audio = np.concatenate(pieces)
    regions, start = [], 0.0
    for p in pieces:
        regions.append(Region(start, start + len(p) / 16000))
        start += len(p) / 16000
    wav = tmp_path / "clips.wav"
    soundfile.write(wav, audio, 16000, subtype="FLOAT")
    model = loaders.whisper_model()
    options = asr.AsrOptions(1, settings.asr.beam_size, "en")
    at_once = asr.transcribe_clips(model, audio, regions, options)
    monkeypatch.setattr(asr, "GROUP_S", 1.0)  # one window per call
    grouped = asr.transcribe_clips(model, WavSamples(wav, len(audio)), regions, options)
    assert len(asr.pack(audio, regions).windows) >= 2
    for a, b in zip(at_once, grouped, strict=True):
        assert a is not None and b is not None
        assert [w.word for w in a.words] == [w.word for w in b.words]


def test_whisper_features_do_not_depend_on_the_blas_thread_count() -> None:
    """A Dask worker (one thread) and the flow's process (every core) must hear the same
    numbers: faster-whisper's own extractor gives last-bit differences on 1 and 2 OpenBLAS
    threads, enough to flip Whisper's near ties (tests/test_scale.py compares datasets)."""
    from threadpoolctl import threadpool_limits

    path, _ = librivox_samples()[0]
    audio = decode(path).samples[: 16000 * 30]
    extractor = loaders.whisper_model().feature_extractor
    with threadpool_limits(limits=2, user_api="blas"):
        two = extractor(audio)
    with threadpool_limits(limits=1, user_api="blas"):
        one = extractor(audio)
    assert two.shape[0] == 80 and np.array_equal(one, two)


def test_empty_input_gives_no_transcripts() -> None:
    assert (
        asr.transcribe_clips(loaders.whisper_model(), np.zeros(0, np.float32), [], asr.AsrOptions())
        == []
    )


def test_the_full_pyannote_pipeline_backend_from_a_local_directory(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """backend="pipeline": what an operator with community-1 on disk would configure."""
    from dataclasses import replace

    from convoice.bench.naive import write_pipeline_config

    write_pipeline_config(tmp_path / "pipeline")
    cfg = replace(settings.diarization, backend="pipeline", pipeline=str(tmp_path / "pipeline"))
    wav, rttm = pyannote_sample()
    audio = decode(wav)
    seg = stages.segment.fn(audio, replace(settings, diarization=cfg))
    assert len(seg.chunks) == 1 and seg.clips
    vectors = stages.embed_speakers.fn(audio, seg)
    empty = np.zeros((0, 256), dtype=np.float32)
    speakers, _ = stages.identify.fn("sample", seg, vectors, [], empty, settings)
    der = diarization_error_rate(
        parse_rttm(Path(rttm).read_text(encoding="utf-8")),
        labelling.diarization_output(seg, speakers),
    )
    assert der <= 0.15, f"DER {der:.3f}"


def test_an_unknown_backend_is_a_clear_error(settings) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from convoice.config import ConfigError

    bad = replace(settings, diarization=replace(settings.diarization, backend="magic"))
    wav, _ = pyannote_sample()
    with pytest.raises(ConfigError, match="segmentation' or 'pipeline"):
        stages.segment.fn(decode(wav), bad)


def test_a_clips_stored_embeddings_are_those_of_its_released_audio(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each clip's d-vector and CAM++ embedding, as ingestion stores them, are the embeddings
    of the FLAC it releases (they differed by up to 0.006 and 0.015 when the clip was cut
    at its millisecond-rounded times and embedded at its exact ones)."""
    from convoice.storage import Store
    from convoice.storage.clip_audio import write_audio
    from convoice.training import campplus as campplus_tune
    from convoice.training import encoder as enc

    audio = decode(pyannote_sample()[0])
    seg = stages.segment.fn(audio, settings)
    vectors = stages.embed_speakers.fn(audio, seg)
    empty = np.zeros((0, 192), dtype=np.float32)
    speakers, _ = stages.identify.fn("sample", seg, vectors, [], empty, settings)
    store = Store(str(tmp_path / "home"))
    _, uris = write_audio(store, "sample", audio, seg, speakers, vectors)
    ids = [labelling.clip_id("sample", c.region.start, c.region.end) for c in seg.clips]
    kept = [i for i, cid in enumerate(ids) if cid in uris]
    assert len(kept) >= 4
    waves = enc.read_waves(store, [uris[ids[i]] for i in kept])
    ours = enc.embed_waves(loaders.voice_encoder(), waves)
    assert np.abs(ours - vectors.clips[kept]).max() < 1e-5
    campplus = campplus_tune.embed_waves("", waves)
    assert np.abs(campplus - vectors.identity_clips[kept]).max() < 1e-5
