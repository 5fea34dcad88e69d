"""The licence gate: what platforms and operators say, as SPDX-like Creative Commons ids.

Pure functions, no I/O. Canonical ids follow SPDX where SPDX has one:

* ``CC-BY-4.0``, ``CC-BY-SA-3.0``, ``CC-BY-NC-ND-4.0`` ... (``CC-BY-3.0-US`` for a ported
  licence given by its creativecommons.org URL),
* ``CC0-1.0`` (public domain dedication), ``CC-PDM-1.0`` (public domain mark),
* an unversioned id such as ``CC-BY-SA`` when the source names the licence but not its
  version (Vimeo reports ``"by-sa"``). YouTube's only CC option is CC BY 3.0, so its
  ``"Creative Commons Attribution license (reuse allowed)"`` becomes ``CC-BY-3.0``.

Anything that is not recognisably Creative Commons canonicalises to ``""``: the gate
rejects what it does not understand rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from convoice.records import SkipReason

_VERSIONS = frozenset({"1.0", "2.0", "2.5", "3.0", "4.0"})
_ELEMENT_ORDER = ("BY", "NC", "SA", "ND")
_YOUTUBE_CC = "creative commons attribution license (reuse allowed)"
_URL_RE = re.compile(
    r"creativecommons\.org/(?P<kind>licenses|publicdomain)/(?P<code>[a-z-]+)"
    r"(?:/(?P<version>\d(?:\.\d)?))?(?:/(?P<port>[a-z]{2,3})(?=[/?#\s]|$))?"
)
_CANONICAL_RE = re.compile(
    r"CC-BY(?:-NC)?(?:-SA|-ND)?(?:-\d\.\d(?:-[A-Z]{2,3})?)?|CC0-1\.0|CC-PDM-1\.0"
)

# Words (after lower-casing) and what they mean; FILLER words carry no meaning.
_ELEMENT_WORDS = {
    "by": "BY",
    "attribution": "BY",
    "nc": "NC",
    "noncommercial": "NC",
    "sa": "SA",
    "sharealike": "SA",
    "nd": "ND",
    "noderivatives": "ND",
    "noderivs": "ND",
}
_PHRASES = (
    (r"creative\s*commons", " cc "),
    (r"\bcc[\s_-]?0\b|\bcc[\s_-]?zero\b", " cczero "),
    (r"public\s*domain\s*mark|\bpdm\b", " ccpdm "),
    (r"non[\s-]*commercial", " noncommercial "),
    (r"share[\s-]*alike", " sharealike "),
    (r"\bno[\s-]*deriv(?:ative)?s?(?:\s*works)?\b", " noderivatives "),
)
_FILLER = frozenset(
    {"cc", "license", "licence", "licensed", "international", "unported", "generic",
     "reuse", "allowed", "version", "v", "under", "the", "deed", "legal", "code", "public",
     "domain", "dedication", "universal", "and", "a"}
)  # fmt: skip

# Without a "CC" marker, a text is a licence only if it is made of these (Vimeo's
# "by-nc-sa", PeerTube's "Attribution - Share Alike").
_BARE_OK = frozenset(_ELEMENT_WORDS) | {"international", "unported", "generic"}


@dataclass(frozen=True)
class LicenceDecision:
    """Whether one item passes the licence gate, and why."""

    license: str  # canonical id, "" when not Creative Commons or unknown
    license_raw: str  # what the platform or the operator said, verbatim
    origin: str  # "platform" | "declared" | "none"
    accepted: bool
    reason: str


def _from_url(text: str) -> str | None:
    """The id of a creativecommons.org licence URL, "" if malformed, None if no such URL."""
    match = _URL_RE.search(text)
    if match is None:
        return None
    code, version, port = match["code"], match["version"] or "", match["port"] or ""
    if len(version) == 1:
        version += ".0"
    if match["kind"] == "publicdomain":
        known = {"zero": "CC0-1.0", "mark": "CC-PDM-1.0"}.get(code, "")
        return known if version in ("", "1.0") else ""
    elements = [_ELEMENT_WORDS.get(part, "?") for part in code.split("-")]
    return _compose(elements, version, port.upper() if version != "4.0" else "")


def _compose(elements: list[str], version: str, port: str = "") -> str:
    """``CC-BY-NC-SA-4.0`` from its parts, or "" when they do not make a CC licence."""
    found = set(elements)
    if "?" in found or "BY" not in found or {"SA", "ND"} <= found:
        return ""
    if version and version not in _VERSIONS:
        return ""
    parts = ["CC", *(e for e in _ELEMENT_ORDER if e in found)]
    if version:
        parts.append(version)
        if port:
            parts.append(port)
    return "-".join(parts)


def _from_words(text: str) -> str:
    """The id of a licence named in words or codes ("CC BY-SA 4.0", "by-nc", "CC0")."""
    for pattern, replacement in _PHRASES:
        text = re.sub(pattern, replacement, text)
    words = re.findall(r"[a-z]+|\d+(?:\.\d+)?", text)
    has_cc = "cc" in words
    versions = [w for w in words if w[0].isdigit()]
    if len(versions) > 1:
        return ""
    version = versions[0] if versions else ""
    if version and "." not in version:
        version += ".0"
    for marker, canonical in (("cczero", "CC0-1.0"), ("ccpdm", "CC-PDM-1.0")):
        if marker in words:
            rest = [w for w in words if w not in (marker, *versions) and w not in _FILLER]
            return canonical if not rest and version in ("", "1.0") else ""
    elements: list[str] = []
    for word in words:
        if word in _ELEMENT_WORDS:
            elements.append(_ELEMENT_WORDS[word])
        elif not word[0].isdigit() and word not in _FILLER:
            return ""  # an unknown word: not something we can vouch for
    if not has_cc and not all(w in _BARE_OK or w[0].isdigit() for w in words):
        return ""  # without "CC", only licence elements: "by-nc-sa", "Attribution - Share Alike"
    return _compose(elements, version)


def canonical_license(raw: str) -> str:
    """Normalise a licence as a platform or an operator states it; "" if not Creative Commons.

    >>> canonical_license("https://creativecommons.org/licenses/by-sa/4.0/")
    'CC-BY-SA-4.0'
    >>> canonical_license("Creative Commons Attribution license (reuse allowed)")
    'CC-BY-3.0'
    >>> canonical_license("Standard YouTube License")
    ''
    """
    text = " ".join((raw or "").split()).lower()
    if not text:
        return ""
    if text == _YOUTUBE_CC:
        return "CC-BY-3.0"
    from_url = _from_url(text)
    if from_url is not None:
        return from_url
    if _CANONICAL_RE.fullmatch(text.upper()):
        return text.upper()
    return _from_words(text)


def is_creative_commons(canonical: str) -> bool:
    """Whether ``canonical`` is a canonical Creative Commons id (as :func:`canonical_license`
    returns)."""
    return bool(_CANONICAL_RE.fullmatch(canonical or ""))


def license_url(canonical: str) -> str:
    """The creativecommons.org deed of a canonical id; "" for an unversioned or non-CC id."""
    if canonical == "CC0-1.0":
        return "https://creativecommons.org/publicdomain/zero/1.0/"
    if canonical == "CC-PDM-1.0":
        return "https://creativecommons.org/publicdomain/mark/1.0/"
    match = re.fullmatch(r"CC-(BY(?:-NC)?(?:-SA|-ND)?)-(\d\.\d)(?:-([A-Z]{2,3}))?", canonical)
    if match is None:
        return ""
    port = f"{match[3].lower()}/" if match[3] else ""
    return f"https://creativecommons.org/licenses/{match[1].lower()}/{match[2]}/{port}"


def license_label(canonical: str) -> str:
    """The short name CC uses in attributions: "CC BY-SA 4.0", "CC0 1.0", ..."""
    if canonical == "CC0-1.0":
        return "CC0 1.0"
    if canonical == "CC-PDM-1.0":
        return "Public Domain Mark 1.0"
    match = re.fullmatch(r"CC-(BY[A-Z-]*?)(?:-(\d\.\d)(?:-([A-Z]{2,3}))?)?", canonical)
    if match is None:
        return canonical
    return " ".join(p for p in ("CC", match[1], match[2] or "", match[3] or "") if p)


def attribution_line(title: str, uploader: str, url: str, license: str) -> str:
    """A TASL attribution (Title, Author, Source, Licence), ready to print.

    ``"Title" by Uploader (url), licensed under CC BY 4.0
    (https://creativecommons.org/licenses/by/4.0/)``; CC0 and the public domain mark read
    "marked with ...". ``license`` may be canonical or raw.

    Raises:
        ValueError: when ``license`` is not a Creative Commons licence.
    """
    canonical = license if is_creative_commons(license) else canonical_license(license)
    if not canonical:
        raise ValueError(f"no attribution for {license!r}: not a Creative Commons licence")
    work = f'"{title.strip() or "Untitled"}"'
    if uploader.strip():
        work += f" by {uploader.strip()}"
    if url.strip():
        work += f" ({url.strip()})"
    verb = "marked with" if canonical in ("CC0-1.0", "CC-PDM-1.0") else "licensed under"
    deed = license_url(canonical)
    named = f"{license_label(canonical)} ({deed})" if deed else license_label(canonical)
    return f"{work}, {verb} {named}"


def local_attributions(attributions: list[str | None]) -> int:
    """How many attribution lines link to a local ``file://`` path (local media ingested
    without a ``page`` in the sources file): a release's users cannot follow them."""
    return sum(1 for line in attributions if line and "(file:" in line)


LOCAL_ATTRIBUTION_HINT = (
    "attributed to a local file:// path, which the release's users cannot follow: give "
    "local works' public address in the sources file's page column when they are ingested "
    "(README, sources file)"
)


def decide_licence(platform_raw: str | None, declared: str | None) -> LicenceDecision:
    """Apply the gate to one item.

    A licence the platform reports wins. If it is not Creative Commons the item is
    rejected, whatever the operator declared: a declaration cannot override the platform.
    Only when the platform reports nothing is the operator's declaration used.
    """
    platform = (platform_raw or "").strip()
    stated = (declared or "").strip()
    if platform:
        canonical = canonical_license(platform)
        if canonical:
            return LicenceDecision(
                canonical, platform, "platform", True, f"the platform reports {canonical}"
            )
        reason = f"the platform reports a licence that is not Creative Commons: {platform!r}"
        if stated:
            reason += f" (the declared {stated!r} cannot override the platform)"
        return LicenceDecision("", platform, "platform", False, reason)
    if stated:
        canonical = canonical_license(stated)
        if canonical:
            reason = f"no licence reported by the platform; the operator declared {canonical}"
            return LicenceDecision(canonical, stated, "declared", True, reason)
        reason = f"no licence reported by the platform, and the declared {stated!r} is not CC"
        return LicenceDecision("", stated, "declared", False, reason)
    return LicenceDecision(
        "", "", "none", False, "no licence reported by the platform and none declared"
    )


_LOOKS_CC_RE = re.compile(
    r"creative\s*commons|creativecommons\.org|\bcc\b|\bcc[\s_-]?(?:by|0|zero)"
)
_NOT_CC_RE = re.compile(
    r"all\s+rights\s+reserved|standard\s+youtube|copyright|©|\(c\)|proprietary|"
    r"\bno\s+licen[cs]e|^none$|^(?:mit|apache|gpl|lgpl|agpl|bsd|mpl|isc|unlicense)\b"
)


def licence_problem(raw: str) -> tuple[str, str] | None:
    """Why an operator's declared licence cannot be used: ``(reason_code, reason)``, or None.

    ``not_creative_commons`` for a licence that is recognisably something else (all
    rights reserved, a software licence, ...); ``unknown_licence`` for a text the
    engine cannot read as a licence, Creative Commons-looking or not ("CC BY 5.0").
    """
    if canonical_license(raw):
        return None
    text = " ".join((raw or "").split()).lower()
    hint = "use e.g. CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0, or leave it blank"
    if _NOT_CC_RE.search(text) and not _LOOKS_CC_RE.search(text):
        return SkipReason.NOT_CREATIVE_COMMONS, f"licence {raw!r} is not a Creative Commons licence"
    return SkipReason.UNKNOWN_LICENCE, f"licence {raw!r} is not a licence the engine knows ({hint})"
