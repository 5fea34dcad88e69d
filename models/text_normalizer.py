"""Transcript text as the field scores it: the words WER is computed on.

English follows the rules of Whisper's ``EnglishTextNormalizer`` (the Open ASR
leaderboard's scoring) on the forms a read sentence holds: lower case, words in
brackets dropped, hesitations ("uh", "um", "hmm") dropped, contractions spelled out
("don't" -> "do not"), titles spelled out ("mr" -> "mister"), numbers written as
digits ("seven" -> "7", "twenty five" -> "25", "one hundred and five" -> "105",
"seventh" -> "7th", "1,000" -> "1000"), "%" and "per cent" as "percent", "$5" as
"5 dollars" (likewise pounds, euros, cents), British spellings as American ones,
diacritics off ("café" -> "cafe"), punctuation off. Every rule maps two spellings of
the same words onto one; none maps different words together: "seven" and "eleven"
stay 7 and 11, "the" and "a" stay themselves. Digits read one at a time ("five five")
stay separate numbers ("5 5").

Other languages follow Whisper's ``BasicTextNormalizer``: lower case, words in
brackets dropped, punctuation and symbols off; letters of every script are words.

Written here rather than imported from ``transformers`` (not a dependency of the
project) or ``num2words`` (digits to words only).
"""

from __future__ import annotations

import re
import unicodedata

_SPELLING = {"neighbours": "neighbors", "neighbour": "neighbor", "colour": "color",
             "colours": "colors", "coloured": "colored", "favourite": "favorite",
             "favourites": "favorites", "harbour": "harbor", "grey": "gray",
             "theatre": "theater", "centre": "center", "centres": "centers",
             "travelled": "traveled", "travelling": "traveling", "traveller": "traveler",
             "humour": "humor", "flavour": "flavor", "organised": "organized",
             "organise": "organize", "realise": "realize", "realised": "realized",
             "recognise": "recognize", "recognised": "recognized", "apologise": "apologize",
             "honour": "honor", "labour": "labor", "behaviour": "behavior",
             "metre": "meter", "metres": "meters", "litre": "liter", "programme": "program",
             "cheque": "check", "jewellery": "jewelry", "defence": "defense",
             "licence": "license", "analyse": "analyze", "catalogue": "catalog",
             "dialogue": "dialog", "plough": "plow", "tyre": "tire", "tyres": "tires",
             "aluminium": "aluminum", "mum": "mom"}  # fmt: skip

_TITLES = {"mr": "mister", "mrs": "missus", "dr": "doctor", "prof": "professor",
           "st": "saint", "jr": "junior", "sr": "senior", "mt": "mount"}  # fmt: skip
_FILLERS = frozenset({"hmm", "mm", "mhm", "mmm", "uh", "um"})
_CONTRACTIONS = {"won't": "will not", "can't": "can not", "let's": "let us",
                 "ain't": "aint", "y'all": "you all", "ma'am": "madam",
                 "gonna": "going to", "gotta": "got to", "wanna": "want to"}  # fmt: skip
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"),
             ("'m", " am"), ("'d", " would"))  # fmt: skip

_ONES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
         "eight": 8, "nine": 9}  # fmt: skip
_TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
          "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
          "nineteen": 19}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}  # fmt: skip
_BIG = {"thousand": 1000, "million": 10**6, "billion": 10**9}
_ORD_ONES = {"first": 1, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
             "seventh": 7, "eighth": 8, "ninth": 9}  # fmt: skip
# "second" is an ordinal only after a tens word ("twenty second"): alone it is mostly time.
_ORD_TEENS = {"tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
              "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17,
              "eighteenth": 18, "nineteenth": 19}  # fmt: skip
_ORD_TENS = {"twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50,
             "sixtieth": 60, "seventieth": 70, "eightieth": 80, "ninetieth": 90}  # fmt: skip
_ORD_BIG = {"hundredth": 100, "thousandth": 1000, "millionth": 10**6}
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}
_PLURAL_UNIT = {"dollar": "dollars", "pound": "pounds", "euro": "euros", "cent": "cents"}


def _kind(word: str, last: str | None) -> tuple[str, int] | None:
    """A number word's category and value (None: not a number word here)."""
    for table, kind in ((_ONES, "ones"), (_TEENS, "teen"), (_TENS, "tens"), (_BIG, "big")):
        if word in table:
            return kind, table[word]
    if word == "hundred":
        return "hundred", 100
    for table, kind in ((_ORD_ONES, "ones"), (_ORD_TEENS, "teen"), (_ORD_TENS, "tens")):
        if word in table:
            return "ord_" + kind, table[word]
    if word == "second" and last == "tens":
        return "ord_ones", 2
    if word in _ORD_BIG:
        return "ord_" + ("hundred" if word == "hundredth" else "big"), _ORD_BIG[word]
    return None


_FOLLOWS: dict[str, set[str | None]] = {  # which category may come after which inside one number
    "ones": {None, "tens", "hundred", "big"},
    "teen": {None, "hundred", "big"},
    "tens": {None, "hundred", "big"},
    "hundred": {"ones", "teen", "tens"},
    "big": {"ones", "teen", "tens", "hundred"},
}


def _ordinal_suffix(value: int) -> str:
    if value % 100 in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")


def _numbers_to_digits(words: list[str]) -> list[str]:
    """Runs of English number words as digits; every other word as it was."""
    out: list[str] = []
    total = current = 0
    last: str | None = None
    last_big = 0

    def flush(suffix: str = "") -> None:
        nonlocal total, current, last, last_big
        if last is not None:
            out.append(f"{total + current}{suffix}")
        total = current = 0
        last, last_big = None, 0

    for i, word in enumerate(words):
        kind = _kind(word, last)
        if kind is None:
            nxt = _kind(words[i + 1], None) if i + 1 < len(words) else None
            if word == "and" and last in ("hundred", "big") and nxt and nxt[0] != "big":
                continue  # "one hundred and five"
            flush()
            out.append(word)
            continue
        name, value = kind
        ordinal = name.startswith("ord_")
        name = name.removeprefix("ord_")
        big_ok = name != "big" or (last_big == 0 or value < last_big)
        if last not in _FOLLOWS[name] or not big_ok or (name == "hundred" and current >= 100):
            flush()
        if name in ("ones", "teen", "tens"):
            current += value
        elif name == "hundred":
            current = (current or 1) * 100
        else:
            total += (current or 1) * value
            current, last_big = 0, value
        last = name
        if ordinal:
            flush(_ordinal_suffix(total + current))
    flush()
    return out


def _strip_diacritics(text: str) -> str:
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if unicodedata.category(ch) != "Mn"
    )


def english_words(text: str) -> list[str]:
    """The words of an English transcript as scored (module docstring)."""
    s = _strip_diacritics(text.lower())
    s = re.sub(r"[<\[][^>\]]*[>\]]|\([^)]*\)", " ", s)
    s = s.replace("’", "'").replace("‘", "'")
    s = re.sub(r"(\d),(?=\d{3}\b)", r"\1", s)  # 1,000 -> 1000
    s = re.sub(r"([$£€])\s*(\d+(?:\.\d+)?)", lambda m: f" {m[2]} {_CURRENCY[m[1]]} ", s)
    s = re.sub(r"(\d)\s*%", r"\1 percent ", s).replace("%", " percent ")
    s = re.sub(r"(\d)\s*¢", r"\1 cents ", s)
    s = re.sub(r"\bper cent\b", "percent", s)
    s = re.sub(r"\.(?!\d)", " ", s)  # periods that are not decimal points
    s = re.sub(r"[^\w'. ]+|_", " ", s.replace("-", " "))
    words = []
    for raw in s.split():
        word = raw.strip("'.")
        if not word or word in _FILLERS:
            continue
        word = _CONTRACTIONS.get(word, word)
        for end, full in _SUFFIXES:
            if word.endswith(end) and len(word) > len(end):
                word = word[: -len(end)] + full
                break
        for part in word.split():
            part = _TITLES.get(part, part)
            words.extend(_SPELLING.get(part, part).split())
    words = _numbers_to_digits(words)
    return [
        _PLURAL_UNIT[w] if w in _PLURAL_UNIT and i and words[i - 1][:1].isdigit() else w
        for i, w in enumerate(words)
    ]


def basic_words(text: str) -> list[str]:
    """The words of a transcript in any language as scored (Whisper's BasicTextNormalizer)."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = re.sub(r"[<\[][^>\]]*[>\]]|\([^)]*\)", " ", s)
    return "".join(" " if unicodedata.category(ch)[0] in "MSP" else ch for ch in s).split()


def scoring_words(text: str, language: str = "en") -> list[str]:
    """English by :func:`english_words`, every other language by :func:`basic_words`."""
    return english_words(text) if language == "en" else basic_words(text)
