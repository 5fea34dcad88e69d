"""The versioned store on real Delta tables in temporary folders."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile

from convoice.config import Settings
from convoice.records import (
    Clip,
    ClipStatus,
    LabelSource,
    Provenance,
    Recording,
    SkippedItem,
    Speaker,
    Transcript,
    Word,
)
from convoice.storage import Store, UnknownReleaseError
from convoice.storage.location import Location
from convoice.storage.schema import CLIP_SCHEMA, EMBEDDING_DIM

PROVENANCE = Provenance(
    pipeline_version="convoice-test",
    models={"asr": "whisper-base", "embedding": "resemblyzer"},
    settings={"routing": {"min_speaker_confidence": 0.7}},
)
SAMPLE_RATE = 16_000


def make_recording(recording_id: str) -> Recording:
    return Recording(
        recording_id=recording_id,
        url=f"https://example.org/watch/{recording_id}",
        source_url="https://example.org/channel",
        title=f"Talk {recording_id}",
        uploader="Ada",
        uploader_url="https://example.org/ada",
        upload_date="20240101",
        license="CC-BY-4.0",
        license_raw="Creative Commons Attribution license (reuse allowed)",
        license_origin="platform",
        attribution=f"\u201cTalk {recording_id}\u201d by Ada, CC BY 4.0, x.org/{recording_id}",
        duration=60.0,
        sample_rate=SAMPLE_RATE,
        audio_uri=Store.recording_audio_key(recording_id),
        run_id="run-1",
        ingested_at="2024-05-01T00:00:00+00:00",
    )


def make_clips(
    store: Store, recording_id: str, speaker_ids: list[str], rng: np.random.Generator
) -> list[Clip]:
    """One two-second clip per speaker id, with audio in the store."""
    vectors = rng.standard_normal((len(speaker_ids), EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # random unit embeddings
    clips = []
    for i, (speaker_id, embedding) in enumerate(zip(speaker_ids, vectors, strict=True)):
        clip_id = f"{recording_id}_c{i}"
        samples = (0.1 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
        words = (Word("hello", 0.1, 0.5, 0.9), Word("world", 0.6, 1.0, 0.8))
        clips.append(
            Clip(
                clip_id=clip_id,
                recording_id=recording_id,
                start=2.0 * i,
                end=2.0 * i + 2.0,
                recording_speaker=f"S{i % 2}",
                embedding=embedding,
                speaker_id=speaker_id,
                speaker_confidence=0.9,
                transcript=Transcript("hello world", "en", 0.99, words, -0.2, 1.1, 0.01),
                transcript_confidence=0.8,
                status=ClipStatus.ACCEPTED if i % 2 == 0 else ClipStatus.REVIEW,
                review_reasons=() if i % 2 == 0 else ("low_word_probability",),
                audio_uri=store.write_flac(
                    Store.clip_audio_key(recording_id, clip_id), samples, SAMPLE_RATE
                ),
            )
        )
    return clips


def absorb(registry: dict[str, Speaker], recording_id: str, clips: list[Clip]) -> list[Speaker]:
    """What the flow does: fold one recording's clips into the speakers they belong to."""
    touched = []
    for speaker_id in sorted({c.speaker_id for c in clips}):
        own = [c for c in clips if c.speaker_id == speaker_id]
        speaker = registry.get(speaker_id) or Speaker(
            speaker_id, np.zeros(EMBEDDING_DIM, np.float32), 0, 0.0, 0, "t0", "t0"
        )
        embeddings = np.stack([c.embedding for c in own])
        speaker.absorb(recording_id, embeddings, sum(c.duration for c in own), "t1")
        registry[speaker_id] = speaker
        touched.append(speaker)
    return touched


def commit_episodes(
    store: Store,
    episodes: Mapping[str, Sequence[str]],
    per_voice: int,
    sentences: Iterator[str],
    make_clip: Callable[[str, str, int, str, float], Clip],
) -> None:
    """Commit one recording per episode: ``per_voice`` turns of each of its voices in turn,
    half a second apart, as ``make_clip(recording, voice, k, sentence, start)`` makes them."""
    registry: dict[str, Speaker] = {}
    for rec, voices in episodes.items():
        clips: list[Clip] = []
        start = 0.0
        for k in range(per_voice):
            for voice in voices:
                clips.append(make_clip(rec, voice, k, next(sentences), start))
                start = clips[-1].end + 0.5
        assert store.commit_recording(
            make_recording(rec), clips, absorb(registry, rec, clips), PROVENANCE, "run-1"
        )


def ingest(
    store: Store, recording_id: str, speaker_ids: list[str], rng: np.random.Generator
) -> list[Clip]:
    registry = {s.speaker_id: s for s in store.speakers()}
    clips = make_clips(store, recording_id, speaker_ids, rng)
    speakers = absorb(registry, recording_id, clips)
    recording = make_recording(recording_id)
    assert store.commit_recording(recording, clips, speakers, PROVENANCE, "run-1")
    return clips


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_empty_store_reads_empty_tables(store: Store) -> None:
    assert Store.open(Settings(home=store.root)).root == store.root
    assert store.clips().schema == CLIP_SCHEMA
    assert store.clips().num_rows == store.recordings().num_rows == store.skipped().num_rows == 0
    assert store.speakers() == []
    ids, matrix = store.speaker_matrix()
    assert ids == [] and matrix.shape == (0, EMBEDDING_DIM)
    assert store.done_recording_ids() == set()
    assert store.releases() == []
    with pytest.raises(ValueError, match="nothing to release"):
        store.release()


def test_commit_twice_is_a_no_op(store: Store, rng: np.random.Generator) -> None:
    clips = ingest(store, "rec_a", ["spk_1", "spk_2", "spk_1"], rng)
    speakers = absorb({}, "rec_a", clips)
    again = store.commit_recording(make_recording("rec_a"), clips, speakers, PROVENANCE, "run-2")
    assert again is False
    assert store.clips().num_rows == 3
    assert store.recordings().num_rows == 1
    assert store.done_recording_ids() == {"rec_a"}
    row = store.clips().to_pylist()[0]
    assert row["pipeline_version"] == "convoice-test"
    assert json.loads(row["models"])["asr"] == "whisper-base"
    assert row["settings_hash"] == PROVENANCE.settings_hash
    assert row["speaker_label_source"] == row["transcript_label_source"] == "machine"
    assert [w["word"] for w in row["words"]] == ["hello", "world"]
    assert np.allclose(row["embedding"], clips[0].embedding)
    with pytest.raises(ValueError, match="do not belong"):
        store.commit_recording(make_recording("rec_b"), clips, [], PROVENANCE, "run-1")


def test_killed_commit_rerun_leaves_one_copy(store: Store, rng: np.random.Generator) -> None:
    clips = make_clips(store, "rec_k", ["spk_1", "spk_2", "spk_1", "spk_3"], rng)
    registry: dict[str, Speaker] = {}
    speakers = absorb(registry, "rec_k", clips)
    # Two attempts killed after the clips, one after the speakers too, none wrote the row.
    store._write_clips("rec_k", clips, PROVENANCE, "run-1")
    store._write_clips("rec_k", clips, PROVENANCE, "run-2")
    store._upsert_speakers(speakers)
    assert store.done_recording_ids() == set()
    # The re-run loads the registry the killed run left and absorbs the recording again.
    registry = {s.speaker_id: s for s in store.speakers()}
    retry = clips[:3]  # e.g. the re-run cut one clip fewer
    speakers = absorb(registry, "rec_k", retry)
    assert store.commit_recording(make_recording("rec_k"), retry, speakers, PROVENANCE, "run-3")
    table = store.clips()
    assert sorted(table["clip_id"].to_pylist()) == sorted(c.clip_id for c in retry)
    assert set(table["run_id"].to_pylist()) == {"run-3"}
    assert store.recordings().num_rows == 1
    by_id = {s.speaker_id: s for s in store.speakers()}
    assert by_id["spk_1"].n_clips == 2 and by_id["spk_1"].n_recordings == 1
    assert by_id["spk_2"].n_clips == 1
    expected = clips[0].embedding + clips[2].embedding
    assert np.allclose(by_id["spk_1"].vector_sum, expected, atol=1e-5)


def test_speakers_upsert_and_matrix(store: Store, rng: np.random.Generator) -> None:
    ingest(store, "rec_1", ["spk_a", "spk_b"], rng)
    ingest(store, "rec_2", ["spk_a", "spk_c", "spk_a"], rng)
    speakers = {s.speaker_id: s for s in store.speakers()}
    assert sorted(speakers) == ["spk_a", "spk_b", "spk_c"]
    assert speakers["spk_a"].n_clips == 3 and speakers["spk_a"].n_recordings == 2
    assert speakers["spk_a"].last_recording_id == "rec_2" and speakers["spk_a"].last_n == 2
    assert speakers["spk_b"].last_sum is not None
    assert speakers["spk_a"].total_duration == pytest.approx(6.0)
    ids, matrix = store.speaker_matrix()
    assert ids == ["spk_a", "spk_b", "spk_c"]
    assert matrix.dtype == np.float32 and matrix.shape == (3, EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert np.allclose(matrix[0], speakers["spk_a"].centroid, atol=1e-5)
    named = speakers["spk_b"]
    named.name, named.label_source = "Ada", LabelSource.HUMAN
    store._upsert_speakers([named])
    store.compact()  # merges small files; what is read does not change
    again = {s.speaker_id: s for s in store.speakers()}
    assert len(again) == 3 and again["spk_b"].name == "Ada"
    assert again["spk_b"].label_source == LabelSource.HUMAN
    assert np.array_equal(again["spk_a"].vector_sum, speakers["spk_a"].vector_sum)


KEY_COLUMNS = ["clip_id", "speaker_id", "text", "status", "audio_path"]


def load_three_ways(folder: Path) -> list[list[tuple[object, ...]]]:
    """The key columns of a pulled dataset, loaded with pandas, pyarrow and HF datasets."""
    from datasets import load_dataset

    frame = pd.read_parquet(folder / "clips.parquet")
    table = pq.read_table(folder / "clips.parquet")
    files = {"train": str(folder / "clips.parquet")}
    train = load_dataset("parquet", data_files=files, cache_dir=str(folder.parent / "hf"))["train"]
    return [
        list(frame[KEY_COLUMNS].itertuples(index=False, name=None)),
        list(zip(*(table[c].to_pylist() for c in KEY_COLUMNS), strict=True)),
        [tuple(row[c] for c in KEY_COLUMNS) for row in train],
    ]


def test_release_pull_and_load(
    store: Store, rng: np.random.Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ingest(store, "rec_1", ["spk_a", "spk_b", "spk_a"], rng)
    ingest(store, "rec_2", ["spk_b"], rng)
    skipped = SkippedItem("src", "https://x/1", "t", "not_creative_commons", "no CC", "r", "t1")
    store.record_skipped([skipped])
    release = store.release(tag="first", note="initial test release")
    assert (release.version, release.tag, release.n_clips, release.n_recordings) == (
        1,
        "first",
        4,
        2,
    )
    assert release.n_speakers == 2 and release.hours == pytest.approx(8 / 3600, abs=1e-6)
    assert release.clips_by_status == {"accepted": 3, "review": 1}
    manifest = json.loads((Path(release.path) / "manifest.json").read_text())
    assert manifest["table_versions"]["clips"] == 1 and manifest["convoice_version"]
    tables = ("clips", "speakers", "recordings", "skipped", "speaker_changes")
    assert set(manifest["files"]) == {f"{n}.parquet" for n in tables}

    dest = tmp_path / "dataset"
    result = store.pull("first", dest)
    assert result.n_clips == 4 and result.copied == 5 + 4 + 1  # tables, audio, attribution
    by_pandas, by_arrow, by_hf = load_three_ways(dest)
    expected = [
        (r["clip_id"], r["speaker_id"], r["text"], r["status"])
        for r in store.materialized_clips()
        .sort_by([("recording_id", "ascending"), ("start", "ascending")])
        .to_pylist()
    ]
    assert by_pandas == by_arrow == by_hf
    assert [row[:4] for row in by_hf] == expected

    clips = pq.read_table(dest / "clips.parquet").to_pylist()
    audio, rate = soundfile.read(dest / clips[0]["audio_path"])
    assert rate == SAMPLE_RATE and audio.shape == (2 * SAMPLE_RATE,)
    speakers = pq.read_table(dest / "speakers.parquet").to_pylist()
    assert {s["speaker_id"]: s["n_clips"] for s in speakers} == {"spk_a": 2, "spk_b": 2}
    assert {s["speaker_id"]: s["n_recordings"] for s in speakers} == {"spk_a": 1, "spk_b": 2}
    attribution = (dest / "ATTRIBUTION.md").read_text()
    assert "\u201cTalk rec_1\u201d by Ada" in attribution and "rec_2" in attribution
    assert 'load_dataset("parquet"' in (dest / "README.md").read_text()
    assert pq.read_table(dest / "skipped.parquet").num_rows == 1

    again = store.pull("v1", dest)
    assert again.copied == 0 and again.skipped == result.copied


def test_later_ingest_never_changes_a_release(
    store: Store, rng: np.random.Generator, tmp_path: Path
) -> None:
    ingest(store, "rec_1", ["spk_a", "spk_b"], rng)
    v1 = store.release()
    first = tmp_path / "first"
    store.pull("1", first)
    before = folder_digest(first)

    ingest(store, "rec_2", ["spk_a", "spk_c"], rng)
    clip_id = store.clips()["clip_id"].to_pylist()[0]
    store.add_labels([{"clip_id": clip_id, "field": "text", "value": "x", "labelled_by": "ed"}])
    v2 = store.release(tag="second")
    assert (v1.version, v2.version) == (1, 2)
    assert (v1.n_clips, v2.n_clips) == (2, 4)

    repulled = tmp_path / "repulled"
    store.pull("v1", repulled)
    assert folder_digest(first) == before
    assert folder_digest(repulled) == before
    assert store.clips(version=v1.table_versions["clips"]).num_rows == 2
    assert [r.version for r in store.releases()] == [1, 2]


def test_tags_and_unknown_versions(store: Store, rng: np.random.Generator) -> None:
    ingest(store, "rec_1", ["spk_a"], rng)
    store.release(tag="spring")
    with pytest.raises(ValueError, match="already used by release v1"):
        store.release(tag="spring")
    with pytest.raises(ValueError, match="invalid release tag"):
        store.release(tag="v7")
    store.release()
    assert store.resolve("spring").version == 1
    assert store.resolve("v2").version == store.resolve("2").version == 2
    with pytest.raises(UnknownReleaseError, match=r"available: v1 \(tag: spring\), v2"):
        store.resolve("v9")
    assert not list((Path(store.root) / "releases").glob(".tmp-*"))


def test_human_labels_override_machine_values(store: Store, rng: np.random.Generator) -> None:
    clips = ingest(store, "rec_1", ["spk_a", "spk_b", "spk_a"], rng)
    first, second = clips[0].clip_id, clips[1].clip_id
    store.add_labels(
        [
            {"clip_id": first, "field": "text", "value": "hullo", "labelled_by": "ann",
             "labelled_at": "2024-06-01T10:00:00+00:00"},
            {"clip_id": first, "field": "text", "value": "hello world!", "labelled_by": "bob",
             "labelled_at": "2024-06-02T12:00:00+02:00"},
            {"clip_id": second, "field": "speaker_id", "value": "spk_a", "labelled_by": "ann",
             "labelled_at": "2024-06-01T11:00:00+00:00", "task_id": "ls-7"},
            {"clip_id": second, "field": "status", "value": "rejected", "labelled_by": "cy",
             "labelled_at": "2024-06-01T09:00:00+00:00"},
        ]
    )  # fmt: skip
    rows = {r["clip_id"]: r for r in store.materialized_clips().to_pylist()}
    assert rows[first]["text"] == "hello world!"
    assert rows[first]["transcript_label_source"] == "human"
    assert rows[first]["speaker_label_source"] == "machine"
    assert rows[first]["labelled_by"] == "bob" and rows[first]["words"] == []
    assert rows[second]["speaker_id"] == "spk_a" and rows[second]["status"] == "rejected"
    assert rows[second]["speaker_label_source"] == "human"
    assert rows[second]["labelled_by"] == "ann"
    assert rows[second]["labelled_at"] == "2024-06-01T11:00:00.000+00:00"
    untouched = rows[clips[2].clip_id]
    assert untouched["labelled_by"] == "" and untouched["speaker_label_source"] == "machine"
    machine = {r["clip_id"]: r for r in store.clips().to_pylist()}
    assert machine[first]["text"] == "hello world" and machine[second]["speaker_id"] == "spk_b"

    release = store.release()
    released = {
        r["clip_id"]: r for r in pq.read_table(Path(release.path) / "clips.parquet").to_pylist()
    }
    assert released[first]["text"] == "hello world!"
    assert released[second]["speaker_label_source"] == "human"
    assert release.clips_by_status == {"accepted": 2, "rejected": 1}


def test_labels_are_validated(store: Store) -> None:
    with pytest.raises(ValueError, match="not one of"):
        store.add_labels([{"clip_id": "c", "field": "duration", "value": "1", "labelled_by": "a"}])
    with pytest.raises(ValueError, match="status label"):
        store.add_labels([{"clip_id": "c", "field": "status", "value": "ok", "labelled_by": "a"}])
    with pytest.raises(ValueError, match="lacks labelled_by"):
        store.add_labels([{"clip_id": "c", "field": "text", "value": "hi"}])
    assert store.labels().num_rows == 0


def test_skipped_keeps_the_latest_reason(store: Store) -> None:
    old = SkippedItem("src", "https://x/1", "t", "download_failed", "timeout", "run-1", "t1")
    new = SkippedItem("src", "https://x/1", "t", "not_creative_commons", "no CC", "run-2", "t2")
    other = SkippedItem("src", "https://x/2", "u", "download_failed", "404", "run-1", "t1")
    store.record_skipped([old, other])
    store.record_skipped([new])
    rows = {r["url"]: r["reason_code"] for r in store.skipped().to_pylist()}
    assert rows == {"https://x/1": "not_creative_commons", "https://x/2": "download_failed"}


def test_audio_keys_and_flac(store: Store, rng: np.random.Generator) -> None:
    samples = (0.2 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    uri = store.write_flac(Store.clip_audio_key("rec_1", "c1"), samples, SAMPLE_RATE)
    assert uri == "audio/clips/rec_1/c1.flac"
    decoded, rate = soundfile.read(store.audio_path(uri), dtype="float32")
    assert rate == SAMPLE_RATE and np.allclose(decoded, samples, atol=1e-4)
    assert store.write_audio("audio/x.bin", b"abc") == "audio/x.bin"
    assert store.read_audio("audio/x.bin") == b"abc"
    assert not list(Path(store.root, "audio").glob(".*.tmp"))
    for bad in ("../escape.flac", "/abs.flac", "tables/x.flac"):
        with pytest.raises(ValueError):
            store.write_audio(bad, b"")


def test_uri_root_uses_the_generic_file_layer(tmp_path: Path, rng: np.random.Generator) -> None:
    """A ``file://`` root goes through the same code as ``s3://`` (pyarrow.fs)."""
    store = Store(f"file://{tmp_path / 'remote'}")
    assert not store.location.is_local
    ingest(store, "rec_1", ["spk_a", "spk_b"], rng)
    assert store.clips().num_rows == 2
    release = store.release(tag="remote")
    assert release.path == f"file://{tmp_path}/remote/releases/v1"
    result = store.pull("remote", tmp_path / "pulled")
    assert result.n_clips == 2
    assert (tmp_path / "pulled" / "audio" / "rec_1" / "rec_1_c0.flac").is_file()
    assert Location(f"file://{tmp_path / 'remote'}").list_dirs("releases") == ["v1"]
