"""Settings: embedded defaults, overridden by a TOML file and the environment.

Lookup order (later wins): the defaults below, ``$CONVOICE_HOME/config.toml``
or the file named by ``$CONVOICE_CONFIG``, then ``CONVOICE_<SECTION>__<KEY>``
environment variables (``CONVOICE_ROUTING__MIN_WORD_PROBABILITY=0.5``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from convoice.operational_settings import (
    ConsolidationSettings,
    EncoderSettings,
    IngestSettings,
    ReviewSettings,
    RunnerKind,
    RunnerSettings,
    ServiceSettings,
    StoreSettings,
    TrackingSettings,
    TtsSettings,
)
from convoice.settings import (
    PIPELINE_VERSION,
    AsrSettings,
    ClipSettings,
    ClusterUnit,
    ConfigError,
    DiarizationSettings,
    EncoderKind,
    IdentitySettings,
    RegistrySettings,
    RoutingSettings,
    Settings,
    SimilarityScale,
    resemblyzer_scale,
)

__all__ = [
    "PIPELINE_VERSION",
    "AsrSettings",
    "ClipSettings",
    "ClusterUnit",
    "ConfigError",
    "ConsolidationSettings",
    "DiarizationSettings",
    "EncoderKind",
    "EncoderSettings",
    "IdentitySettings",
    "IngestSettings",
    "RegistrySettings",
    "ReviewSettings",
    "RoutingSettings",
    "RunnerKind",
    "RunnerSettings",
    "ServiceSettings",
    "Settings",
    "SimilarityScale",
    "StoreSettings",
    "TrackingSettings",
    "TtsSettings",
    "default_home",
    "environment",
    "load_settings",
    "resemblyzer_scale",
]


# Table settings whose keys an operator adds to (or changes) over the defaults, rather than
# replacing the whole default table: `{tr = 0.95}` keeps English's 0.92 bar; `{en = 0.8}`
# lowers it explicitly; `[asr] language_weights = {fa = 2}` keeps Latin's 0.1 (`{la = 1}`
# undoes it). These are the two tables whose defaults are not empty.
MERGED_TABLES = frozenset({"transcript_confidence_by_language", "language_weights"})


OFF = frozenset({"0", "false", "no", "off"})  # how a process switch below is turned off


def switched_on(name: str) -> bool:
    """Whether the process switch ``name`` (an environment variable, on by default) is on:
    ``CONVOICE_ONNX``, ``CONVOICE_ONNX_SPLIT``, ``CONVOICE_KEEP_FREED_MEMORY``."""
    return os.environ.get(name, "1").strip().lower() not in OFF


def _coerce(raw: str, like: Any) -> Any:
    if isinstance(like, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(like, int):
        return int(raw)
    if isinstance(like, float):
        return float(raw)
    return raw


def _coerce_map(value: Any, annotation: str, where: str) -> dict[str, Any]:
    """A table setting (``{ru = 0.9}`` in TOML, ``"ru=0.9,tr=0.95"`` in the environment) with
    its values of the annotated type (``dict[str, float]`` or ``dict[str, str]``)."""
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"{where}={value!r}: write key=value pairs, comma-separated")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, not {value!r}")
    if "float" not in annotation:
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, Any] = {}
    for key, raw in value.items():
        if isinstance(raw, bool):
            raise ConfigError(f"{where}.{key}={raw!r}: must be a number")
        try:
            out[str(key)] = float(raw)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}.{key}={raw!r}: must be a number") from err
    return out


def _coerce_list(value: Any, where: str) -> tuple[str, ...]:
    """A list setting (``["en", "ru"]`` in TOML, ``"en,ru"`` in the environment) as a tuple."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must be a list, not {value!r}")
    return tuple(str(v) for v in value)


def _apply(obj: Any, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {where}{key}; known: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key} must be a table")
            updates[key] = _apply(current, value, f"{where}{key}.")
        elif isinstance(current, dict):
            table = _coerce_map(value, str(known[key].type), f"{where}{key}")
            updates[key] = {**current, **table} if key in MERGED_TABLES else table
        elif isinstance(current, tuple):
            updates[key] = _coerce_list(value, f"{where}{key}")
        elif isinstance(value, str) and not isinstance(current, str):
            try:
                updates[key] = _coerce(value, current)
            except ValueError as err:
                raise ConfigError(f"{where}{key}={value!r}: {err}") from err
        else:
            updates[key] = value
    return replace(obj, **updates)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("CONVOICE_") or "__" not in name:
            continue
        section, key = name.removeprefix("CONVOICE_").lower().split("__", 1)
        out.setdefault(section, {})[key] = value
    return out


def default_home(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("CONVOICE_HOME") or str(Path.home() / ".convoice")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and ``overrides``."""
    env = dict(os.environ if environ is None else environ)
    home = overrides.pop("home", None) or default_home(env)
    settings = Settings(home=home)
    config_path = Path(path or env.get("CONVOICE_CONFIG") or Path(home) / "config.toml")
    if config_path.is_file():  # a remote home (s3://...) keeps its config next to the CLI
        try:
            data = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{config_path}: {err}") from err
        data.pop("home", None)
        settings = _apply(settings, data, "")
    settings = _apply(settings, _env_overrides(env), "")
    result: Settings = _apply(settings, overrides, "") if overrides else settings
    return result


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables (``CONVOICE_REVIEW__PORT``, ...) inside the block; put back
    what was there (or nothing) after it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
