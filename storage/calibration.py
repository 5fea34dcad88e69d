"""The calibration store: the shipped calibration, and refits from people's labels.

Refits live in the store as ``calibration/v<N>/calibration.json`` (versions
``store-<N>``), written once and never changed, each with the CAM++ encoder
whose raw scores it was fitted on (``encoder``; refits made before encoders
were recorded count as ``pretrained``'s). A calibration belongs to an encoder:
new clips are labelled with the newest refit made under the current CAM++;
without one, a trained encoder routes with the calibration its card names
(the one it was judged with when it was trained); the pretrained one, and
a store without refits, with the calibration that ships in the package
(``convoice.models.calibration_shipped``), fitted on the benchmark's tuning half; so does
the tuned CAM++ that ships (``campplus-tune-1``: the same mapping held on tuning-half voices
it was not trained on, README "Speaker identity").
"""

from __future__ import annotations

import json
import re

from convoice.records import Calibration, CalibrationError
from convoice.storage.location import Location

CALIBRATION = "calibration"
FILE = "calibration.json"
ENCODER = "encoder"  # key of a refit's file: the CAM++ encoder it was fitted under


def shipped() -> Calibration:
    """The calibration in the package (fitted on the benchmark's tuning half)."""
    from convoice.models.calibration_shipped import SHIPPED

    return Calibration.from_dict(SHIPPED)


def refit_versions(location: Location) -> list[int]:
    """The numbers of the store's refits, oldest first."""
    found = []
    for name in location.list_dirs(CALIBRATION):
        match = re.fullmatch(r"v(\d+)", name)
        if match and location.exists(f"{CALIBRATION}/{name}/{FILE}"):
            found.append(int(match.group(1)))
    return sorted(found)


def read_refit(location: Location, number: int) -> Calibration:
    key = f"{CALIBRATION}/v{number}/{FILE}"
    try:
        return Calibration.from_dict(json.loads(location.read_bytes(key)))
    except json.JSONDecodeError as err:
        raise CalibrationError(f"{location.uri(key)} is not JSON: {err}") from err


def refit_encoder(location: Location, number: int) -> str:
    """The CAM++ encoder a refit was fitted under (``pretrained`` for older refits)."""
    from convoice.storage.encoders import PRETRAINED

    data = json.loads(location.read_bytes(f"{CALIBRATION}/v{number}/{FILE}"))
    return str(data.get(ENCODER, PRETRAINED))


def current(location: Location, encoder: str | None = None) -> Calibration:
    """The calibration that labels new clips identified by the CAM++ ``encoder``.

    ``encoder``: an encoder id (default: the store's current CAM++). Its newest
    refit; else the calibration its card names; else the newest refit of any
    encoder (cards written before calibrations were recorded) or, for the
    CAM++ encoders that ship, the shipped one.
    """
    from convoice.storage.encoders import EncoderRegistry, built_in

    registry = EncoderRegistry(location)
    chosen = encoder or registry.current("campplus")
    versions = refit_versions(location)
    for number in reversed(versions):
        if refit_encoder(location, number) == chosen:
            return read_refit(location, number)
    if built_in(chosen):
        return shipped()
    named = registry.card(chosen).calibration
    if named:
        known = by_version(location)
        if named not in known:
            raise CalibrationError(f"encoder {chosen} routes with {named!r}, which is not stored")
        return known[named]
    return read_refit(location, versions[-1]) if versions else shipped()


def by_version(location: Location) -> dict[str, Calibration]:
    """Every calibration a clip of this store may name, by version."""
    out = {c.version: c for c in (read_refit(location, n) for n in refit_versions(location))}
    ship = shipped()
    out[ship.version] = ship
    return out


def next_version(location: Location) -> str:
    return f"store-{max(refit_versions(location), default=0) + 1}"


def save_refit(location: Location, calibration: Calibration, encoder: str = "pretrained") -> str:
    """Write ``calibration`` (its version must be :func:`next_version`), fitted on the raw
    scores of the CAM++ ``encoder``; returns its key."""
    match = re.fullmatch(r"store-(\d+)", calibration.version)
    if not match:
        raise CalibrationError(f"a refit's version is store-<N>, not {calibration.version!r}")
    key = f"{CALIBRATION}/v{int(match.group(1))}/{FILE}"
    if location.exists(key):
        raise FileExistsError(f"calibration {calibration.version} exists already")
    data = json.loads(calibration.to_json())
    data[ENCODER] = encoder
    location.write_bytes(key, json.dumps(data, indent=1, sort_keys=True).encode())
    return key
