"""The calibration store: the shipped calibration, and refits from people's labels.

Refits live in the store as ``calibration/v<N>/calibration.json`` (versions
``store-<N>``), written once and never changed; the newest one labels new
clips. A store without refits uses the calibration that ships in the package
(``convoice.models.calibration_shipped``), fitted on the benchmark's tuning half.
"""

from __future__ import annotations

import json
import re

from convoice.records import Calibration, CalibrationError
from convoice.storage.location import Location

CALIBRATION = "calibration"
FILE = "calibration.json"


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


def current(location: Location) -> Calibration:
    """The calibration that labels new clips: the newest refit, else the shipped one."""
    versions = refit_versions(location)
    return read_refit(location, versions[-1]) if versions else shipped()


def by_version(location: Location) -> dict[str, Calibration]:
    """Every calibration a clip of this store may name, by version."""
    out = {c.version: c for c in (read_refit(location, n) for n in refit_versions(location))}
    ship = shipped()
    out[ship.version] = ship
    return out


def next_version(location: Location) -> str:
    return f"store-{max(refit_versions(location), default=0) + 1}"


def save_refit(location: Location, calibration: Calibration) -> str:
    """Write ``calibration`` (its version must be :func:`next_version`); returns its key."""
    match = re.fullmatch(r"store-(\d+)", calibration.version)
    if not match:
        raise CalibrationError(f"a refit's version is store-<N>, not {calibration.version!r}")
    key = f"{CALIBRATION}/v{int(match.group(1))}/{FILE}"
    if location.exists(key):
        raise FileExistsError(f"calibration {calibration.version} exists already")
    location.write_bytes(key, calibration.to_json().encode())
    return key
