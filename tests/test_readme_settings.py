"""The README's Settings block is the embedded defaults: every key it names exists, and every
value it gives is the one the code starts from (so an operator who copies it changes nothing)."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from convoice.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def settings_block() -> dict[str, Any]:
    """The first TOML block of the README's "## Settings" section, parsed."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Settings\n") :]
    section = section[: section.index("\n## ", 1)]
    found = re.search(r"```toml\n(.*?)```", section, re.S)
    if found is None:
        raise ValueError("README's Settings section has no TOML block")
    return tomllib.loads(found.group(1))


def mismatches(obj: Any, values: dict[str, Any], where: str = "") -> list[str]:
    """Every key of ``values`` that ``obj`` lacks or holds another default for."""
    out = []
    for key, documented in values.items():
        if not hasattr(obj, key):
            out.append(f"{where}{key}: not a setting")
            continue
        default = getattr(obj, key)
        if dataclasses.is_dataclass(default):
            out += mismatches(default, documented, f"{where}{key}.")
            continue
        if isinstance(default, tuple):
            default = list(default)
        if isinstance(default, dict):  # a table documented in part: its entries must match
            default = {k: default.get(k) for k in documented}
        if default != documented:
            out.append(f"{where}{key}: README {documented!r}, code {default!r}")
    return out


def test_the_readme_settings_are_the_embedded_defaults() -> None:
    documented = settings_block()
    assert {"diarization", "routing", "review"} <= set(documented)  # the block was found whole
    assert mismatches(Settings(home="/nowhere"), documented) == []


def test_a_wrong_documented_default_is_found() -> None:
    documented = {"review": {"queue": "speaker", "no_such_key": 1}, "diarization": {}}
    assert mismatches(Settings(home="/nowhere"), documented) == [
        "review.queue: README 'speaker', code 'clip'",
        "review.no_such_key: not a setting",
    ]
