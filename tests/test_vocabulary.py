"""The vocabulary learned from corrections, its CLI, and round two of transcription."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_storage import PROVENANCE, absorb, make_recording
from typer.testing import CliRunner

from convoice.cli.root import app
from convoice.engines.round_two import rare_word
from convoice.models.post_correction import find_fixes
from convoice.models.vocabulary import (
    active_for,
    learn,
    missed_words,
    prompt_text,
    taught_for,
    term_errors,
)
from convoice.records import (
    Clip,
    ClipStatus,
    Correction,
    StoredClip,
    Term,
    TermOrigin,
    TermState,
    Transcript,
    Word,
    channel_of,
)
from convoice.storage import Store
from convoice.storage.vocabulary import read_terms, set_term


def test_alignment_finds_the_words_the_machine_got_wrong() -> None:
    machine = "Shabun Nakamura, flew to TLA XCAA on Monday."
    human = "Siobhan Nakamura flew to Tlaxcala on Monday."
    assert missed_words(machine, human) == ["Siobhan", "Tlaxcala"]
    assert missed_words(human, human) == []
    # function words and case or punctuation changes teach nothing
    assert missed_words("a dog saw Aoife", "The dog saw aoife!") == []
    # a word the machine left out is missed too
    assert missed_words("met in Milco", "met Kwabena in Xochimilco") == ["Kwabena", "Xochimilco"]


def test_term_errors_count_recurring_words_missed() -> None:
    found = term_errors(
        "Siobhan met Siobhan in Tlaxcala", "Shabun met Siobhan in Tlaxcala", ["Siobhan", "Tlaxcala"]
    )
    assert (found.errors, found.words) == (1, 3)


def test_learning_counts_per_channel_and_store_once_per_clip() -> None:
    fixes = [
        Correction("c1", "chan", "Shabun flew", "Siobhan flew"),
        Correction("c2", "chan", "Shaban called", "Siobhan called"),
        Correction("c3", "other", "to TLA XCAA", "to Tlaxcala"),
    ]
    first = learn([], fixes, at="t1")
    counts = {(t.channel, t.term): t.count for t in first.terms}
    assert counts == {
        ("chan", "Siobhan"): 2,
        ("", "Siobhan"): 2,
        ("other", "Tlaxcala"): 1,
        ("", "Tlaxcala"): 1,
    }
    again = learn(first.terms, fixes, at="t2")  # the same corrections teach nothing twice
    assert again.changed == [] and again.new_clips == 0
    removed = [
        Term(t.channel, t.term, t.count, t.origin,
             TermState.REMOVED if t.term == "Siobhan" else t.state, t.clip_ids)
        for t in first.terms
    ]  # fmt: skip
    more = learn(removed, [Correction("c4", "chan", "Shabun", "Siobhan")])
    siobhan = next(t for t in more.terms if (t.channel, t.term) == ("chan", "Siobhan"))
    assert siobhan.state == TermState.REMOVED and siobhan.count == 3  # counted, but stays removed
    assert "Siobhan" not in active_for(more.terms, "chan")
    assert active_for(more.terms, "chan") == ["Tlaxcala"]  # the store-wide one


def test_prompt_and_channel() -> None:
    terms = [
        Term("chan", "Aoife", 1),
        Term("chan", "Siobhan", 5),
        Term("", "Tlaxcala", 9),
        Term("", "Siobhan", 5),
        Term("", "Przemyslaw", 2, TermOrigin.OPERATOR, TermState.REMOVED),
        Term("chan", "Przemyslaw", 7),
    ]
    assert active_for(terms, "chan") == ["Siobhan", "Aoife", "Tlaxcala"]
    assert active_for(terms, "chan", limit=1) == ["Siobhan"]
    assert prompt_text(["A", "B"], "hotwords") == "A, B"
    assert prompt_text(["A", "B"], "initial_prompt") == "A, B."
    with pytest.raises(ValueError, match="prompt mode"):
        prompt_text(["A"], "both")
    assert channel_of("Ada", "u", "s") == "Ada"
    assert channel_of("", "", "http://h:1/shows/ep1.mp4") == "http://h:1/shows/"


def _run(home: Path, *args: str) -> str:
    done = CliRunner().invoke(app, [*args, "--home", str(home)])
    assert done.exit_code == 0, done.output
    return done.output


def _clip(store: Store, rid: str, i: int, text: str, samples: np.ndarray, conf: float) -> Clip:
    rng = np.random.default_rng(i)
    embedding = rng.standard_normal(256).astype(np.float32)
    words = tuple(
        Word(w, 0.3 * k, 0.3 * k + 0.25, conf) for k, w in enumerate(f" {text}".split(" ")[1:])
    )
    words = tuple(Word(" " + w.word, w.start, w.end, w.probability) for w in words)
    cid = f"{rid}_c{i}"
    return Clip(
        clip_id=cid,
        recording_id=rid,
        start=10.0 * i,
        end=10.0 * i + len(samples) / 16000,
        recording_speaker="S0",
        embedding=embedding / np.linalg.norm(embedding),
        speaker_id="spk_a",
        speaker_confidence=0.95,
        transcript=Transcript(text, "en", 0.99, words, -0.9, 1.2, 0.01, "whisper-base"),
        transcript_confidence=conf,
        status=ClipStatus.REVIEW if conf < 0.8 else ClipStatus.ACCEPTED,
        review_reasons=("low_transcript_confidence",) if conf < 0.8 else (),
        audio_uri=store.write_flac(store.clip_audio_key(rid, cid), samples, 16000),
    )


def test_vocabulary_cli_list_add_remove_learn(tmp_path: Path) -> None:
    store = Store(tmp_path)
    silence = np.zeros(16000, dtype=np.float32)
    clips = [_clip(store, "rec1", 0, "Shabun flew to TLA XCAA.", silence, 0.4)]
    store.commit_recording(
        make_recording("rec1"), clips, absorb({}, "rec1", clips), PROVENANCE, "r"
    )
    store.add_labels(
        [{"clip_id": "rec1_c0", "field": "text", "value": "Siobhan flew to Tlaxcala.",
          "labelled_by": "ann"}]
    )  # fmt: skip
    assert "learned from 1 corrected clips: 4 terms changed" in _run(
        tmp_path, "vocabulary", "learn"
    )
    out = _run(tmp_path, "vocabulary", "list", "--channel", "Ada")
    assert "Siobhan" in out and "Tlaxcala" in out and "2 terms" in out
    _run(tmp_path, "vocabulary", "add", "Przemyslaw", "--channel", "Ada")
    _run(tmp_path, "vocabulary", "remove", "Tlaxcala", "--channel", "Ada")
    assert "learned from 0 corrected clips" in _run(tmp_path, "vocabulary", "learn")
    terms = {(t.channel, t.term): t for t in read_terms(store)}
    assert terms[("Ada", "Przemyslaw")].origin == TermOrigin.OPERATOR
    assert terms[("Ada", "Tlaxcala")].state == TermState.REMOVED
    assert (
        terms[("Ada", "Siobhan")].state == TermState.ACTIVE and terms[("Ada", "Siobhan")].count == 1
    )
    listed = _run(tmp_path, "vocabulary", "list", "--channel", "Ada")
    assert "Przemyslaw" in listed and "Tlaxcala" not in listed
    assert "Tlaxcala" in _run(tmp_path, "vocabulary", "list", "--removed")
    bad = CliRunner().invoke(app, ["vocabulary", "add", "two words", "--home", str(tmp_path)])
    assert bad.exit_code == 2 and "one word at a time" in bad.output
    assert store.table_versions()["vocabulary"] is not None  # versioned with the store
    with pytest.raises(ValueError, match="not a word"):
        set_term(store, "", "!!", TermState.ACTIVE, "me")


NAMES = [
    "Siobhan Nakamura flew to Tlaxcala on Monday.",
    "Kwabena Osei says the road to Ouarzazate is closed.",
    "Thandiwe called Siobhan Nakamura about Tlaxcala.",
    "Kwabena Osei and Thandiwe met near Ouarzazate.",
]


def _human_text(store: Store) -> dict[str, tuple[str, str]]:
    rows = store.materialized_clips().to_pylist()
    return {r["clip_id"]: (r["text"], r["transcript_label_source"]) for r in rows}


def test_round_two_keeps_people_and_only_takes_better_scores(
    tmp_path: Path, prefect_harness: None, tts_cache: Path
) -> None:
    from convoice.flows.retranscribe import retranscribe_flow
    from convoice.storage import calibration as stored_calibration
    from convoice.synth.speech import synthesize

    store = Store(tmp_path)
    audio = [synthesize("rms", s, tts_cache) for s in NAMES]
    machine = [
        "Shabun Nakhon Muriff flew to TLA XCAA on Monday.",
        "Quabena Osay says the road to Tlaxcalla is closed.",
        "Thandiwe called Shabun Nakamari about TLA XCAA.",  # wrong, but scored high: kept
        "Quabena Osay and Tandewe met near Wazazat.",
    ]
    confs = [0.3, 0.3, 0.99, 0.3]
    clips = [_clip(store, "rec1", i, machine[i], audio[i], confs[i]) for i in range(4)]
    clips[2].status, clips[2].review_reasons = ClipStatus.REVIEW, ("uncertain_speaker",)
    store.commit_recording(
        make_recording("rec1"), clips, absorb({}, "rec1", clips), PROVENANCE, "r"
    )
    # byte for byte, spaces too; "Tlaxcalla" is a near miss of a word taught by c0 (Tlaxcala)
    # that the post-correction changes in a machine text, never in a person's
    person = "Kwabena Osei says the road to Tlaxcalla is closed."
    people = {"rec1_c0": NAMES[0] + "  ", "rec1_c1": person}
    store.add_labels(
        [
            {"clip_id": c, "field": "text", "value": v, "labelled_by": "ann"}
            for c, v in people.items()
        ]
        + [
            {"clip_id": c, "field": "status", "value": "accepted", "labelled_by": "ann"}
            for c in people
        ]
    )
    before = _human_text(store)
    store.release()
    report = retranscribe_flow(home=str(tmp_path))
    after = _human_text(store)
    for clip_id, text in people.items():
        assert after[clip_id] == (text, "human") == before[clip_id]
    taught = taught_for(read_terms(store), "Ada")
    assert "Tlaxcala" in taught and "Tlaxcalla" not in taught
    assert find_fixes(person.split(), taught, rare_word(""))  # it would be changed if touched
    rows = {r["clip_id"]: r for r in store.clips().to_pylist()}
    assert rows["rec1_c0"]["text"] == machine[0]  # people's clips' machine rows untouched too
    assert rows["rec1_c1"]["text"] == machine[1]
    assert report.transcribed == 2 and report.learned_clips == 2
    # no better score than 0.99: Whisper's old text is kept, post-corrected towards the taught
    # words, its confidence and status as they were
    assert rows["rec1_c2"]["text"] == NAMES[2]
    assert rows["rec1_c2"]["transcript_confidence"] == 0.99
    assert rows["rec1_c2"]["status"] == ClipStatus.REVIEW
    models = json.loads(rows["rec1_c2"]["models"])
    assert models["round_two"] and ["TLA XCAA.", "Tlaxcala"] in models["post_correction"]
    new = rows["rec1_c3"]
    assert new["transcript_score_raw"] > 0.3 and new["text"] != machine[3]
    shipped = stored_calibration.shipped()  # the store's current calibration (none refitted)
    raw, language = new["transcript_score_raw"], new["language"]
    assert new["transcript_confidence"] == shipped.transcript_probability(raw, language)
    assert "Kwabena" in new["text"] or "Ouarzazate" in new["text"], new["text"]
    assert report.replaced == 1 and report.text_changed == 2 and report.post_corrected >= 1
    changes = store.release().changes  # the next release says what changed
    assert changes["text_changed"] == 2
    assert changes["text_changed_clips"] == ["rec1_c2", "rec1_c3"]
    assert changes["review_share_before"] == 0.5  # c2, c3 (c0, c1 accepted by people)
    assert changes["review_share"] == report.review_after / 4
    versions = store.table_versions()
    again = retranscribe_flow(home=str(tmp_path))  # nothing new to learn or try
    assert again.transcribed == 0 and again.already_tried == 2
    assert store.table_versions() == versions


def test_a_new_ingest_of_a_channel_is_told_its_words(tmp_path: Path) -> None:
    from convoice.config import load_settings
    from convoice.models.from_settings import asr_options, with_vocabulary
    from convoice.records import MediaItem
    from convoice.storage.channel_vocabulary import channel_vocabulary

    store = Store(tmp_path)
    set_term(store, "Ada", "Tlaxcala", TermState.ACTIVE, "me")
    set_term(store, "Bob", "Ouarzazate", TermState.ACTIVE, "me")
    set_term(store, "", "Siobhan", TermState.ACTIVE, "me")
    settings = load_settings(home=str(tmp_path))
    item = MediaItem(
        "https://x.org/v/1", "https://x.org/ada", "generic", "1", "t", "Ada", "", "", "", "",
        "none", None,
    )  # fmt: skip
    words = channel_vocabulary(item, settings)
    assert words == ["Tlaxcala", "Siobhan"]
    options = with_vocabulary(asr_options(settings), words, "hotwords")
    assert (options.hotwords, options.initial_prompt) == ("Tlaxcala, Siobhan", "")
    options = with_vocabulary(options, words, "initial_prompt")
    assert (options.hotwords, options.initial_prompt) == ("", "Tlaxcala, Siobhan.")


def test_retranscribe_says_when_the_model_does_not_load(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["retranscribe", "--model", "small", "--home", str(tmp_path)])
    assert done.exit_code == 2, done.output
    assert "small" in done.output and "Whisper" in done.output
    both = ["retranscribe", "--recording", "r", "--channel", "c", "--home", str(tmp_path)]
    assert CliRunner().invoke(app, both).exit_code == 2


def test_round_two_scores_old_and_new_alike_crediting_taught_words() -> None:
    from convoice.config import RoutingSettings
    from convoice.models.round_two import revise, wants_round_two
    from convoice.storage import calibration as stored_calibration

    old = [
        {"word": " Shabun", "start": 0.0, "end": 0.4, "probability": 0.9},
        {"word": " flew", "start": 0.5, "end": 0.8, "probability": 0.9},
    ]
    row = {
        "clip_id": "c", "start": 0.0, "end": 1.0, "text": "Shabun flew", "words": old,
        "language": "en", "transcript_confidence": 0.9, "status": "review",
        "review_reasons": ["uncertain_speaker", "low_word_probability"], "models": "{}",
        "transcript_label_source": "machine",
    }  # fmt: skip
    new = Transcript(
        "Siobhan flew", "en", 0.99,
        (Word(" Siobhan", 0.0, 0.4, 0.3), Word(" flew", 0.5, 0.8, 0.95)), -0.3, 1.0, 0.0,
    )  # fmt: skip
    cfg = RoutingSettings()
    plain = revise(
        StoredClip.from_row(row), new, "k", cfg
    )  # scored as Whisper gives it: 0.53 < 0.9
    assert not plain.replaced and set(plain.fields) == {"models"}
    taught = revise(StoredClip.from_row(row), new, "k", cfg, ["Siobhan"])
    assert taught.replaced and taught.fields["text"] == "Siobhan flew"
    assert taught.fields["transcript_confidence"] == 0.9747  # sqrt(1.0 * 0.95)
    assert taught.fields["transcript_score_raw"] == 0.9747  # round two's bar reads this one
    assert taught.fields["words"][0]["probability"] == 0.3  # Whisper's own stays in the row
    assert taught.fields["review_reasons"] == ["uncertain_speaker"]  # speaker reasons stay
    assert taught.fields["transcript_status"] == "accepted"  # its own kind's status follows
    shipped = stored_calibration.shipped()
    calibrated = revise(StoredClip.from_row(row), new, "k", cfg, ["Siobhan"], None, shipped)
    probability = shipped.transcript_probability(0.9747, "en")
    assert probability != 0.9747  # the raw score is not a probability
    assert calibrated.fields["transcript_confidence"] == probability  # as the ingest stores it
    assert calibrated.fields["transcript_score_raw"] == 0.9747
    assert taught.status_after == "review"
    assert json.loads(taught.fields["models"])["round_two"] == "k"
    assert not wants_round_two(
        StoredClip.from_row({**row, "transcript_label_source": "human"}), cfg, every=True
    )
    assert not wants_round_two(StoredClip.from_row({**row, "status": "rejected"}), cfg, every=True)
    accepted = {**row, "status": "accepted", "transcript_confidence": 0.95}  # over English's 0.92
    assert not wants_round_two(StoredClip.from_row(accepted), cfg)
    assert wants_round_two(StoredClip.from_row({**accepted, "transcript_confidence": 0.9}), cfg)
    speaker_only = {**row, "transcript_confidence": 0.95, "transcript_status": "accepted"}
    assert not wants_round_two(StoredClip.from_row(speaker_only), cfg)  # in review for its speaker
    assert wants_round_two(StoredClip.from_row({**speaker_only, "transcript_status": None}), cfg)
    assert wants_round_two(StoredClip.from_row({**row, "status": "accepted"}), cfg, every=True)


def test_round_two_holds_a_transcript_to_the_bar_routing_holds_it_to() -> None:
    """English's 0.92 (not the global 0.80), on the raw score routing compares with it (not
    the calibrated probability); another language keeps 0.80."""
    import dataclasses

    from convoice.config import RoutingSettings
    from convoice.models.round_two import wants_round_two

    row = {
        "clip_id": "c", "start": 0.0, "end": 1.0, "text": "a b", "words": [], "language": "en",
        "transcript_score_raw": 0.85, "transcript_confidence": 0.34, "status": "accepted",
        "review_reasons": [], "models": "{}", "transcript_label_source": "machine",
    }  # fmt: skip
    cfg = RoutingSettings()
    assert wants_round_two(StoredClip.from_row(row), cfg)  # 0.85 < English's 0.92
    assert wants_round_two(StoredClip.from_row({**row, "transcript_score_raw": 0.9}), cfg)
    assert not wants_round_two(StoredClip.from_row({**row, "transcript_score_raw": 0.93}), cfg)
    assert not wants_round_two(StoredClip.from_row({**row, "language": "de"}), cfg)  # 0.80
    lowered = dataclasses.replace(cfg, transcript_confidence_by_language={"en": 0.8})
    assert not wants_round_two(StoredClip.from_row(row), lowered)
    old = {**row, "transcript_score_raw": None, "transcript_confidence": 0.86}  # no raw kept
    assert wants_round_two(StoredClip.from_row(old), cfg)
    by_target = dataclasses.replace(cfg, transcript_target_precision=0.3)  # routing by p
    assert not wants_round_two(StoredClip.from_row(row), by_target)  # p 0.34 >= 0.3
