"""The calibration that ships in the package (placeholder until fitted)."""

from typing import Any

SHIPPED: dict[str, Any] = {
    "version": "shipped-0",
    "rule": "identity placeholder",
    "speaker": {"xs": [0.0, 1.0], "ys": [0.0, 1.0], "clips": 0, "right": 0},
    "transcript": {},
}
