"""Round two's post-correction towards taught words, and which words count as unknown to Whisper."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from convoice.config import RoutingSettings
from convoice.engines.round_two import rare_word
from convoice.models.post_correction import PostCorrection, corrected, find_fixes, fixer
from convoice.models.round_two import revise
from convoice.models.vocabulary import learn, taught_for
from convoice.records import (
    STORE_WIDE,
    Correction,
    StoredClip,
    Term,
    TermOrigin,
    TermState,
    Transcript,
    Word,
)

TAUGHT = ["Siobhan", "Nakamura", "Tlaxcala", "Kwabena", "Osei", "Llanfair", "Aoife"]


def _fixed(text: str, terms: list[str] = TAUGHT, cfg: PostCorrection | None = None) -> str:
    words = text.split()
    out: list[str] = []
    i = 0
    for fix in find_fixes(words, terms, rare_word(""), cfg):
        out += [*words[i : fix.start], fix.term]
        i = fix.stop
    return " ".join(out + words[i:])


def test_whisper_knows_common_words_and_their_inflections() -> None:
    rare = rare_word("")  # the shipped Whisper base tokenizer
    for name in ("Siobhan", "Tlaxcala", "Kwabena", "Aoife", "Osei", "Leanfair", "Oife"):
        assert rare(name), name
    # " the" and " told" are two tokens for Whisper base, "hurried" is hur+ried: all known
    for word in ("the", "told", "two", "hurried", "crabbing", "hedges", "festival", "Monday"):
        assert not rare(word), word
    found = learn(
        [], [Correction("c1", "Ada", "Shabun hurry to TLA XCAA", "Siobhan hurried to Tlaxcala")],
        keep=rare,
    )  # fmt: skip
    assert {t.term for t in found.terms} == {"Siobhan", "Tlaxcala"}


def test_post_correction_replaces_near_misses_of_taught_words_only() -> None:
    assert _fixed("Thandiwe called Shabun Nakamari about TLA XCAA.") == (
        "Thandiwe called Siobhan Nakamura about Tlaxcala"  # the span's comma/period is the fix's
    )
    assert _fixed("we met in Leanfair and Oife hurried home") == (
        "we met in Llanfair and Aoife hurried home"  # "in", "and" not swallowed
    )
    # common words are never rewritten, however close ("Osei" / "OK", "Aoife" / "a few")
    assert _fixed("OK a few of them found the road") == "OK a few of them found the road"
    assert _fixed("Zebediah went to Marrakesh") == "Zebediah went to Marrakesh"  # not close
    # two terms as close as each other: no fix (the margin)
    assert _fixed("Banana", ["Banena", "Banama"]) == "Banana"
    assert _fixed("Oife", TAUGHT, PostCorrection(max_distance=0)) == "Oife"
    assert fixer([], rare_word(""), PostCorrection()) is None  # a channel with no taught words
    assert fixer(TAUGHT, rare_word(""), PostCorrection(max_distance=0)) is None


def test_a_fix_keeps_times_the_lowest_probability_and_the_punctuation() -> None:
    words = (
        Word(" to", 0.0, 0.2, 0.9), Word(" TLA", 0.3, 0.5, 0.4), Word(" XCAA,", 0.5, 0.9, 0.6),
        Word(" then", 1.0, 1.2, 0.9),
    )  # fmt: skip
    t = Transcript("to TLA XCAA, then", "en", 0.9, words, -0.3, 1.0, 0.0)
    fixes = find_fixes([w.word for w in words], TAUGHT, rare_word(""))
    assert [(f.start, f.stop, f.term) for f in fixes] == [(1, 3, "Tlaxcala")]
    new = corrected(t, fixes)
    assert new.text == "to Tlaxcala, then"
    assert new.words[1] == Word(" Tlaxcala,", 0.3, 0.9, 0.4)


def test_taught_words_are_the_channels_own_learned_ones() -> None:
    terms = [
        Term("Ada", "Siobhan", 3, clip_ids=("c1",)),
        Term("Ada", "Tlaxcala", 1, clip_ids=("c2",)),
        Term("Ada", "Przemyslaw", 0, origin=TermOrigin.OPERATOR),  # no person corrected it here
        Term("Ada", "Kwabena", 2, state=TermState.REMOVED, clip_ids=("c3",)),
        Term(STORE_WIDE, "Aoife", 5, clip_ids=("c9",)),  # another channel's word
        Term("Bob", "Llanfair", 4, clip_ids=("c5",)),
        Term(STORE_WIDE, "Tlaxcala", 1, state=TermState.REMOVED, origin=TermOrigin.OPERATOR),
    ]
    assert taught_for(terms, "Ada") == ["Siobhan"]
    assert taught_for(terms, "Bob") == ["Llanfair"]
    assert taught_for(terms, STORE_WIDE) == [] and taught_for(terms, "Cy") == []
    assert Term("Ada", "x").state == TermState.ACTIVE


def test_round_two_post_corrects_the_machine_text_it_keeps_and_records_it() -> None:
    old = [
        {"word": " Shabun", "start": 0.0, "end": 0.4, "probability": 0.99},
        {"word": " flew.", "start": 0.5, "end": 0.8, "probability": 0.99},
    ]
    row = StoredClip.from_row(
        {
            "clip_id": "c", "start": 0.0, "end": 1.0, "text": "Shabun flew.", "words": old,
            "language": "en", "transcript_confidence": 0.99, "status": "accepted",
            "review_reasons": [], "models": "{}", "transcript_label_source": "machine",
        }
    )  # fmt: skip
    fix = fixer(TAUGHT, rare_word(""), PostCorrection())
    kept = revise(row, None, "k", RoutingSettings(), TAUGHT, fix)  # no new transcript: old kept
    assert not kept.replaced and kept.text_changed
    assert kept.fields["text"] == "Siobhan flew."
    assert kept.fields["words"][0] == {"word": " Siobhan", "start": 0.0, "end": 0.4,
                                       "probability": 0.99}  # fmt: skip
    assert "transcript_confidence" not in kept.fields and kept.status_after == "accepted"
    models = json.loads(kept.fields["models"])
    assert models["post_correction"] == [["Shabun", "Siobhan"]] and models["round_two"] == "k"
    again = StoredClip.from_row({**row.to_row(), **kept.fields})
    twice = revise(again, None, "k2", RoutingSettings(), TAUGHT, fix)
    assert not twice.fixes and not twice.text_changed and "text" not in twice.fields
    assert json.loads(twice.fields["models"])["post_correction"] == [["Shabun", "Siobhan"]]
    plain = revise(row, None, "k", RoutingSettings(), TAUGHT)  # no fixer: nothing but the key
    assert set(plain.fields) == {"models"} and not plain.text_changed


def test_the_vocabulary_bench_serves_its_episodes_on_one_port(tmp_path: Path) -> None:
    """Its URLs make the clip ids, hence the audit sample: the port must not change by run."""
    from convoice.synth.serve import free_port, serve_directory, serve_preferring

    port = free_port()
    with serve_preferring(tmp_path, port) as url:
        assert url == f"http://127.0.0.1:{port}/"
        # taken: a fixed port is never silently another
        with pytest.raises(OSError), serve_directory(tmp_path, port):
            pass
        with serve_preferring(tmp_path, port) as other:  # the bench falls back, and says so
            assert other != url and other.startswith("http://127.0.0.1:")


def test_an_ingest_with_a_vocabulary_leaves_its_transcripts_as_round_two_would() -> None:
    from convoice.models.round_two import as_round_two, attempt_way

    words = (Word(" Oife", 0.0, 0.4, 0.5), Word(" sang.", 0.5, 0.8, 0.9))
    base = Transcript("Oife sang.", "en", 0.9, words, -0.3, 1.0, 0.0, "whisper-base")
    other = Transcript("Oife sang.", "de", 0.9, words, -0.3, 1.0, 0.0, "whisper-small")
    fix = fixer(TAUGHT, rare_word(""), PostCorrection())
    none, made, elsewhere = as_round_two([None, base, other], "key1", "whisper-base", fix)
    assert none is None
    assert made is not None and elsewhere is not None
    assert (made.text, made.round_two, made.post_corrected) == (
        "Aoife sang.",
        "key1",
        (("Oife", "Aoife"),),
    )
    assert elsewhere.round_two == "" and elsewhere.text == "Aoife sang."  # round two's Whisper
    assert as_round_two([base], "k", "whisper-base", None)[0] == replace(base, round_two="k")
    assert attempt_way("hotwords", 5, 0.34, 0.1) == "hotwords:beam5:fix0.34/0.1"
    assert attempt_way("hotwords", 5, 0, 0.1) == "hotwords:beam5"  # as before, when off
