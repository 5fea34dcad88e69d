"""The calibration that ships in the package (written by ``convoice calibrate
--bench-home``, see :mod:`convoice.training.calibrate`; do not edit by hand)."""

from typing import Any

SHIPPED: dict[str, Any] = {
    "judged_on": "the 1506 tuning clips, each judged by the curve fitted without its recording "
    "(leave one recording out, 234 recordings)",
    "operating_point": None,
    "rule": "speaker: shipped-7's curve where it reaches 0.995 (what it accepts unchanged), below "
    "it one probability, the share right of the 1506 clips of `convoice bench --split "
    "tune` (corpus seeds 11, 12, 13, 14, 15, 16, 17, 18, 19) (split rule "
    "convoice-split-1) it does not accept; speaker right: evaluation.judge; transcripts: "
    "shipped-7's",
    "speaker": {
        "clips": 1506,
        "right": 1435,
        "xs": (0.0, 1.3169, 1.3331, 2.0),
        "ys": (0.909444, 0.909444, 0.998215, 0.998215),
    },
    "speaker_ece": 0.0,
    "speaker_kinds": {},
    "speaker_reliability": (
        {"clips": 1506, "high": 1.0, "low": 0.9, "mean_probability": 0.9529, "right": 0.9529},
    ),
    "transcript": {
        "*": {
            "clips": 227,
            "right": 84,
            "xs": (
                0.0,
                0.46,
                0.4824,
                0.7322,
                0.7327,
                0.7925,
                0.7953,
                0.8556,
                0.8569,
                0.8791,
                0.8798,
                0.894,
                0.9006,
                0.9295,
                0.9323,
                0.9557,
                0.956,
                0.9832,
                0.985,
                0.9896,
            ),
            "ys": (
                0.018502,
                0.018502,
                0.054356,
                0.054356,
                0.245002,
                0.245002,
                0.393237,
                0.393237,
                0.541431,
                0.541431,
                0.541431,
                0.541431,
                0.703687,
                0.703687,
                0.74278,
                0.74278,
                0.755219,
                0.755219,
                0.842511,
                0.842511,
            ),
        }
    },
    "version": "shipped-8",
}
