"""A long recording is read from its WAV a block or a clip at a time, never held whole,
and every stage finds in it exactly what it finds in the same samples held in memory.

The recording: pyannote's real two-speaker sample (30 s) four times over ~21 minutes
of quiet noise: past two VAD blocks (600 s each) and the ten minutes a FLAC is
encoded in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile

from convoice.config import load_settings
from convoice.media.audio import Audio, StreamedAudio, WavSamples, decode, open_audio
from convoice.media.clips import clips_only
from convoice.models.segmentation import ENVELOPE_HOP_S, rms_envelope
from convoice.records import SAMPLE_RATE, FloatArray, sample_index
from convoice.storage import Store
from convoice.storage.clip_audio import write_audio
from convoice.synth.recordings import pyannote_sample
from convoice.tasks import stages

LENGTH_S = 1250.0
SPEECH_AT_S = (5.0, 590.0, 640.0, 1200.0)  # one crosses the first VAD block's end (600 s)
BLOCK = int(600 * SAMPLE_RATE)  # the longest read a stage may make


@dataclass(frozen=True)
class CountedSamples(WavSamples):
    """WavSamples that remember the length of every read."""

    reads: list[int] = field(default_factory=list)

    def __getitem__(self, index: slice, /) -> FloatArray:
        data = super().__getitem__(index)
        self.reads.append(len(data))
        return data


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    speech, rate = soundfile.read(pyannote_sample()[0], dtype="int16")
    assert rate == SAMPLE_RATE
    rng = np.random.default_rng(7)
    samples = (rng.standard_normal(int(LENGTH_S * rate)) * 40).astype(np.int16)
    for at in SPEECH_AT_S:
        start = int(at * rate)
        samples[start : start + len(speech)] = speech
    path = tmp_path_factory.mktemp("long") / "long.wav"
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def both(long_wav: Path):  # type: ignore[no-untyped-def]
    """The recording held whole, the same read as it is needed, and each one's stages."""
    settings = load_settings(environ={})
    streamed = open_audio(long_wav)
    assert isinstance(streamed, StreamedAudio)
    counted = StreamedAudio(CountedSamples(long_wav, len(streamed.samples)), SAMPLE_RATE)
    whole = decode(long_wav)
    out = {}
    for name, audio in (("whole", whole), ("streamed", counted)):
        seg = stages.segment.fn(audio, settings)
        out[name] = (audio, seg, stages.embed_speakers.fn(audio, seg))
    return out


def test_ranges_read_from_the_wav_are_the_decoded_samples(long_wav: Path) -> None:
    whole = decode(long_wav).samples
    streamed = open_audio(long_wav).samples
    assert len(streamed) == len(whole)
    n = len(whole)
    for a, b in [(0, 1), (0, 16000), (12345, 99999), (n - 5, n), (n - 5, n + 100), (7, 3)]:
        part = streamed[a:b]
        assert part.dtype == np.float32 and np.array_equal(part, whole[a:b]), (a, b)
    with pytest.raises(ValueError):
        streamed[0:100:2]


def test_a_file_that_is_not_a_16k_mono_wav_is_decoded_whole(tmp_path: Path) -> None:
    speech, rate = soundfile.read(pyannote_sample()[0], dtype="float32")
    path = tmp_path / "x.flac"
    soundfile.write(path, speech, rate)
    audio = open_audio(path)
    assert isinstance(audio, Audio) and np.allclose(audio.samples, speech, atol=1e-4)


def test_the_envelope_block_by_block_is_the_envelope_at_once(long_wav: Path) -> None:
    samples = decode(long_wav).samples
    hop = int(SAMPLE_RATE * ENVELOPE_HOP_S)
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames) / hop)  # the formula all at once
    at_once = np.convolve(rms, np.ones(5, dtype=np.float32) / 5, mode="same").astype(np.float32)
    for block_s in (600.0, 7.0, 0.013):
        assert np.array_equal(rms_envelope(samples, SAMPLE_RATE, block_s=block_s), at_once)


def test_segmentation_and_embeddings_are_those_of_the_samples_held_whole(both) -> None:  # type: ignore[no-untyped-def]
    (_, seg_w, vec_w), (_, seg_s, vec_s) = both["whole"], both["streamed"]
    assert len(seg_w.clips) >= 8 and seg_w.speech[-1].end > 1200
    for name in ("speech", "chunks", "turns", "overlaps", "clips"):
        assert getattr(seg_s, name) == getattr(seg_w, name), name
    for a, b in zip(seg_w.chunk_segmentations, seg_s.chunk_segmentations, strict=True):
        assert a.chunk == b.chunk and np.array_equal(a.activity, b.activity)
    for name in ("clips", "nodes", "identity_clips", "identity_nodes"):
        assert np.array_equal(getattr(vec_s, name), getattr(vec_w, name)), name


def test_no_stage_reads_more_than_a_block_and_the_store_gets_every_sample(  # type: ignore[no-untyped-def]
    both, long_wav: Path, tmp_path: Path
) -> None:
    audio, seg, vectors = both["streamed"]
    settings = load_settings(environ={})
    empty = np.zeros((0, 256), dtype=np.float32)
    speakers = stages.identify.fn("rec_long", seg, vectors, [], empty, settings)[0]
    store = Store(str(tmp_path / "home"))
    uri, clip_uris = write_audio(store, "rec_long", audio, seg, speakers, vectors)
    clip_samples, _ = clips_only(audio, seg)
    reads = audio.samples.reads
    assert reads and max(reads) <= BLOCK and sum(reads) < 5 * len(audio.samples)
    flac, _ = soundfile.read(store.audio_path(uri), dtype="int16")
    assert np.array_equal(flac, soundfile.read(long_wav, dtype="int16")[0])
    whole = decode(long_wav).samples
    first = seg.clips[0].region
    expected = whole[sample_index(first.start) : sample_index(first.end)]
    assert np.array_equal(clip_samples.samples[: len(expected)], expected)
    assert clip_uris


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_freed_heap_goes_back_to_the_system_before_transcription() -> None:
    from convoice.orchestration.memory import release_freed_memory

    blocks = [bytearray(2000) for _ in range(100_000)]  # 200 MB on the heap, not mmap'ed
    pin = bytearray(2000)  # above them: free() alone cannot shrink the heap
    del blocks
    before = _rss_mib()
    assert release_freed_memory()
    assert before - _rss_mib() > 100, (before, _rss_mib())
    del pin


def test_the_long_bench_makes_the_same_file_every_time(tmp_path: Path) -> None:
    # `convoice bench --long` compares runs: its quiet noise is seeded, so the clips it
    # finds do not change from run to run (they did: 18 or 21 clips at 0.5 h).
    from convoice.bench.long import make_long_media

    decoded = []
    for name in ("a.mp4", "b.mp4"):
        make_long_media(tmp_path / name, hours=0.02, speech_every_s=40.0)
        decoded.append(decode(tmp_path / name).samples)
    assert len(decoded[0]) > 60 * SAMPLE_RATE
    np.testing.assert_array_equal(decoded[0], decoded[1])


def test_clips_waiting_for_whisper_are_on_disk_with_the_same_values(  # type: ignore[no-untyped-def]
    both, tmp_path: Path
) -> None:
    """The bound on a recording held ahead of the one transcribed: its clips wait in a
    float32 WAV (no samples in memory) and read back as the in-memory clips, bit for bit."""
    audio, seg, _ = both["streamed"]
    held, held_seg = clips_only(audio, seg)
    on_disk, disk_seg = clips_only(audio, seg, tmp_path / "clips.wav")
    assert isinstance(on_disk, StreamedAudio) and isinstance(held, Audio)
    assert disk_seg == held_seg and len(on_disk.samples) == len(held.samples)
    for clip in disk_seg.clips:
        cut = slice(sample_index(clip.region.start), sample_index(clip.region.end))
        assert np.array_equal(on_disk.samples[cut], held.samples[cut])
    assert (tmp_path / "clips.wav").stat().st_size >= 4 * len(held.samples)


def test_the_dense_long_bench_is_speech_throughout_and_the_same_every_time() -> None:
    """`--long-dense`: four voices of the tuning half, about nine tenths of the block speech."""
    from convoice.bench.long_dense import BLOCK_S, make_dense_block

    first, again = make_dense_block(11), make_dense_block(11)
    np.testing.assert_array_equal(first, again)
    assert len(first) == int(BLOCK_S * SAMPLE_RATE)
    loud = np.abs(first[: len(first) // 1600 * 1600]).reshape(-1, 1600).max(axis=1) > 0.02
    assert 0.8 < loud.mean() < 0.98
