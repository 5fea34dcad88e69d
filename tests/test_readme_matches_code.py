"""What the README tells a user is what the code does: its Settings block is the embedded
defaults (every key it names exists, every value is the one the code starts from, so an
operator who copies it changes nothing), and every ``convoice ...`` line of its shell blocks
names a real command with options that command has."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import typer.main

from convoice.cli import app
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


def command_problems(line: str, root: Any) -> list[str]:
    """What is wrong with one documented ``convoice ...`` line: a command that does not
    exist, or an option its command lacks (placeholders like ``[--split ...]`` count too).
    ``root`` is the CLI as a click command (Typer's own click: groups are told by their
    ``commands``)."""
    words = line.split("#")[0].replace("[", " ").replace("]", " ").replace("|", " ").split()[1:]
    command, path = root, ["convoice"]
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        sub = command.commands.get(words[0])
        if sub is None:
            break
        command, path = sub, [*path, words.pop(0)]
    if hasattr(command, "commands"):
        return [f"{line}: {' '.join(path)} needs a command"]
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    options = [w.split("=")[0] for w in words if w.startswith("--")]
    return [f"{line}: {' '.join(path)} has no {o}" for o in options if o not in known]


def test_every_documented_command_and_option_exists() -> None:
    root = typer.main.get_command(app)
    text = README.read_text(encoding="utf-8")
    lines = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        for line in block.splitlines()
        if line.strip().startswith("convoice ")
    ]
    assert len(lines) > 40  # the README's command lists were read
    assert [p for line in lines for p in command_problems(line, root)] == []
    assert command_problems("convoice review push --queues speaker", root) == [
        "convoice review push --queues speaker: convoice review push has no --queues"
    ]
    assert command_problems("convoice review", root) == [
        "convoice review: convoice review needs a command"
    ]
