"""The benchmark's WER scoring: spellings of the same words agree, different words do not."""

from __future__ import annotations

import pytest

from convoice.models.evaluation import RefTurn, wer_by_status
from convoice.models.metrics import standard_wer_count, wer_count
from convoice.models.text_normalizer import basic_words, english_words, scoring_words


@pytest.mark.parametrize(
    ("reference", "hypothesis"),
    [
        ("seven of clubs, five five", "7 of clubs. 5, 5."),
        ("twenty five people", "25 people"),
        ("twenty-five people", "25 people"),
        ("one hundred and five", "105"),
        ("two thousand and twenty", "2020"),
        ("one thousand people", "1,000 people"),
        ("the seventh day", "the 7th day"),
        ("the twenty second of May", "the 22nd of May"),
        ("ten percent", "10%"),
        ("ten per cent", "10 %"),
        ("five dollars", "$5"),
        ("one dollar", "$1"),
        ("Mr. Smith", "mister smith"),
        ("there isn't much", "there is not much"),
        ("the colour grey", "The color gray."),
        ("a café", "a cafe"),
        ("I said it", "I, uh, said it [noise]"),
    ],
)
def test_two_spellings_of_the_same_words_score_no_error(reference: str, hypothesis: str) -> None:
    assert standard_wer_count(reference, hypothesis).errors == 0
    assert standard_wer_count(hypothesis, reference).errors == 0


@pytest.mark.parametrize(
    ("reference", "hypothesis", "errors"),
    [
        ("seven", "eleven", 1),
        ("seven", "11", 1),
        ("the cat", "a cat", 1),
        ("twenty five", "twenty nine", 1),
        ("the seventh day", "the 8th day", 1),
        ("five dollars", "5 pounds", 1),
        ("five five", "55", 2),  # two digits read out are two numbers, not fifty-five
        ("mister smith", "missus smith", 1),
        ("a second chance", "a 2nd chance", 1),  # "second" alone is no ordinal
    ],
)
def test_different_words_stay_errors(reference: str, hypothesis: str, errors: int) -> None:
    assert standard_wer_count(reference, hypothesis).errors == errors


def test_numbers_become_digits_and_read_digits_stay_apart() -> None:
    assert english_words("Seven of clubs, five five.") == ["7", "of", "clubs", "5", "5"]
    assert english_words("one million two hundred thousand") == ["1200000"]
    assert english_words("nine eleven") == ["9", "11"]
    assert english_words("I don't know") == ["i", "do", "not", "know"]


def test_other_languages_drop_punctuation_and_keep_their_letters() -> None:
    assert basic_words("Straße! Привет_мир, l'homme (bruit) 7") == [
        "straße",
        "привет",
        "мир",
        "l",
        "homme",
        "7",
    ]
    assert scoring_words("семь", "ru") == ["семь"]  # no English number rules outside English
    assert standard_wer_count("привет мир", "пока мир", "ru").errors == 1


def test_the_benchmark_gives_both_scorings_and_judges_the_standard_one() -> None:
    truth = {"r": [RefTurn(0.0, 2.0, "a", "Seven of clubs, five five.")]}
    heard = ["7", "of", "clubs.", "5,", "5."]
    words = [{"word": w, "start": 0.2 + 0.3 * i, "end": 0.4 + 0.3 * i} for i, w in enumerate(heard)]
    clips = [
        {
            "recording_id": "r",
            "clip_id": "c",
            "start": 0.0,
            "end": 2.0,
            "words": words,
            "status": "accepted",
            "transcript_status": "accepted",
        }
    ]
    accepted, _ = wer_by_status(clips, truth)
    raw, _ = wer_by_status(clips, truth, standard=False)
    assert (accepted.errors, accepted.words) == (0, 5)
    assert (raw.errors, raw.words) == (3, 5)
    assert wer_count("seven", "7").errors == 1  # the raw scoring is kept as it was


def test_the_benchmark_gives_transcript_ece_over_judged_clips() -> None:
    from convoice.models.evaluation import score

    truth = {"r": [RefTurn(0.0, 2.0, "a", "Seven of clubs, five five.")]}
    heard = ["7", "of", "clubs.", "5,", "5."]
    words = [{"word": w, "start": 0.2 + 0.3 * i, "end": 0.4 + 0.3 * i} for i, w in enumerate(heard)]
    clip = {
        "recording_id": "r",
        "clip_id": "c",
        "speaker_id": "s",
        "start": 0.0,
        "end": 2.0,
        "words": words,
        "status": "accepted",
        "transcript_status": "accepted",
        "speaker_confidence": 0.9,
        "transcript_confidence": 0.75,
    }
    figures = score([clip], truth, 2.0)
    assert figures["transcript_judged_clips"] == 1.0
    assert figures["transcript_confidence_ece"] == pytest.approx(0.25)  # right, said 0.75
    assert figures["wer_accepted"] == 0.0 and figures["wer_accepted_raw"] == 0.6
