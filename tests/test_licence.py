"""The licence gate: canonical ids, attribution lines and the platform-vs-declared rules."""

from __future__ import annotations

import pytest

from convoice.models.licence import (
    LicenceDecision,
    attribution_line,
    canonical_license,
    decide_licence,
    is_creative_commons,
    license_label,
    license_url,
)

YOUTUBE_CC = "Creative Commons Attribution license (reuse allowed)"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (YOUTUBE_CC, "CC-BY-3.0"),
        ("https://creativecommons.org/licenses/by-sa/4.0/", "CC-BY-SA-4.0"),
        ("http://creativecommons.org/licenses/by-sa/4.0", "CC-BY-SA-4.0"),
        ("https://creativecommons.org/licenses/by/4.0/deed.en", "CC-BY-4.0"),
        ("https://creativecommons.org/licenses/by-nc-nd/4.0/legalcode", "CC-BY-NC-ND-4.0"),
        ("https://creativecommons.org/licenses/by/3.0/legalcode", "CC-BY-3.0"),
        ("https://creativecommons.org/licenses/by/3.0/us/", "CC-BY-3.0-US"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
        ("http://creativecommons.org/publicdomain/zero/1.0", "CC0-1.0"),
        ("https://creativecommons.org/publicdomain/mark/1.0/", "CC-PDM-1.0"),
        ("by-nc-sa", "CC-BY-NC-SA"),
        ("by", "CC-BY"),
        ("Attribution - Non Commercial - Share Alike", "CC-BY-NC-SA"),
        ("CC BY 4.0", "CC-BY-4.0"),
        ("cc-by-4.0", "CC-BY-4.0"),
        ("CC-BY-SA-3.0", "CC-BY-SA-3.0"),
        ("CC BY-NC-ND 4.0", "CC-BY-NC-ND-4.0"),
        ("  CC   BY-SA 4.0 ", "CC-BY-SA-4.0"),
        (
            "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International",
            "CC-BY-NC-ND-4.0",
        ),
        ("Creative Commons Attribution-NoDerivs 3.0 Unported", "CC-BY-ND-3.0"),
        ("Creative Commons Attribution-ShareAlike 2.5", "CC-BY-SA-2.5"),
        ("CC0", "CC0-1.0"),
        ("cc0 1.0", "CC0-1.0"),
        ("CC0-1.0", "CC0-1.0"),
        ("Public Domain Mark 1.0", "CC-PDM-1.0"),
        ("CC-PDM-1.0", "CC-PDM-1.0"),
    ],
)
def test_canonical_license_recognises_creative_commons(raw: str, expected: str) -> None:
    assert canonical_license(raw) == expected
    assert is_creative_commons(expected)
    assert canonical_license(expected) == expected  # canonical ids are fixed points


@pytest.mark.parametrize(
    "raw",
    [
        "Standard YouTube License",
        "All rights reserved",
        "",
        "   ",
        "MIT",
        "GPL-3.0",
        "Creative Commons",  # which one?
        "CC",
        "CC BY-SA-ND 4.0",  # share-alike and no-derivatives exclude each other
        "CC BY 5.0",  # no such version
        "CC0 2.0",
        "public domain",
        "CC BY 4.0 or later, except commercial use",
        "https://example.com/licenses/by/4.0/",
    ],
)
def test_canonical_license_rejects_everything_else(raw: str) -> None:
    assert canonical_license(raw) == ""


def test_is_creative_commons_wants_canonical_ids() -> None:
    assert is_creative_commons("CC-BY-NC-SA-4.0")
    assert is_creative_commons("CC0-1.0")
    assert not is_creative_commons("")
    assert not is_creative_commons("CC BY 4.0")  # raw, not canonical
    assert not is_creative_commons("MIT")


def test_license_url_and_label() -> None:
    assert license_url("CC-BY-SA-4.0") == "https://creativecommons.org/licenses/by-sa/4.0/"
    assert license_url("CC-BY-3.0-US") == "https://creativecommons.org/licenses/by/3.0/us/"
    assert license_url("CC-BY") == ""
    assert license_label("CC-BY-NC-ND-4.0") == "CC BY-NC-ND 4.0"
    assert license_label("CC-PDM-1.0") == "Public Domain Mark 1.0"


def test_attribution_line_is_tasl() -> None:
    line = attribution_line("Talk", "Alice", "https://v.example/1", "CC-BY-4.0")
    assert line == (
        '"Talk" by Alice (https://v.example/1), licensed under CC BY 4.0 '
        "(https://creativecommons.org/licenses/by/4.0/)"
    )


def test_attribution_line_without_uploader_and_with_raw_licence() -> None:
    line = attribution_line("Talk", "  ", "https://v.example/1", YOUTUBE_CC)
    assert line == (
        '"Talk" (https://v.example/1), licensed under CC BY 3.0 '
        "(https://creativecommons.org/licenses/by/3.0/)"
    )


def test_attribution_line_public_domain_and_unversioned() -> None:
    cc0 = attribution_line("", "Bob", "https://v.example/2", "CC0-1.0")
    assert cc0.startswith('"Untitled" by Bob (https://v.example/2), marked with CC0 1.0 (')
    assert attribution_line("T", "Bob", "u", "by-sa").endswith("licensed under CC BY-SA")


def test_attribution_line_refuses_non_cc() -> None:
    with pytest.raises(ValueError, match="not a Creative Commons licence"):
        attribution_line("T", "U", "https://v.example/3", "Standard YouTube License")


def test_platform_licence_wins() -> None:
    decision = decide_licence(YOUTUBE_CC, "CC-BY-SA-4.0")
    assert decision == LicenceDecision(
        "CC-BY-3.0", YOUTUBE_CC, "platform", True, "the platform reports CC-BY-3.0"
    )


def test_declaration_cannot_override_a_non_cc_platform_licence() -> None:
    decision = decide_licence("Standard YouTube License", "CC-BY-4.0")
    assert not decision.accepted
    assert decision.origin == "platform"
    assert decision.license == ""
    assert decision.license_raw == "Standard YouTube License"
    assert "not Creative Commons" in decision.reason
    assert "cannot override" in decision.reason


def test_declaration_used_when_the_platform_is_silent() -> None:
    for silent in (None, "", "  "):
        decision = decide_licence(silent, "cc-by-4.0")
        assert decision.accepted
        assert (decision.license, decision.license_raw, decision.origin) == (
            "CC-BY-4.0",
            "cc-by-4.0",
            "declared",
        )


def test_non_cc_declaration_rejected() -> None:
    decision = decide_licence(None, "All rights reserved")
    assert not decision.accepted
    assert decision.origin == "declared"
    assert "not CC" in decision.reason


def test_nothing_reported_nothing_declared() -> None:
    decision = decide_licence(None, None)
    assert decision == LicenceDecision(
        "", "", "none", False, "no licence reported by the platform and none declared"
    )
