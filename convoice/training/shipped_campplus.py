"""How the CAM++ layer that ships (``convoice/weights/campplus-tune-1.npz``) was made.

The tuning half's corpora of seeds 11-13 (``convoice bench --split tune``'s voices, dealt
by :func:`convoice.bench.corpus.make_half_corpus`) ingested with the pretrained CAM++ into
stores of their own; every clip whose true voice covers 90 % or more of its speech, with
that voice as its label; :func:`convoice.training.campplus.train_campplus` at the
``[encoder]`` defaults (120 steps, seed 0); the tensors that moved, saved as an npz::

    python -m convoice.training.shipped_campplus OUT.npz HOME11:11 HOME12:12 HOME13:13

(each ``HOME`` a store made with ``[encoder] start_campplus = "pretrained"``). Session 28
made it from three such stores: 478 clips of the 21 tuning voices (README "Identities
that heal").
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convoice.records import FloatArray

MAIN_VOICE = 0.9  # a training clip's true voice covers at least this share of its speech


def truth_clips(home: str, seed: int) -> tuple[list[FloatArray], list[str]]:
    """The audio and true voice of each single-voice clip of a tuning-half store."""
    from convoice.models import evaluation
    from convoice.training.calibrate import bench_truth
    from convoice.training.encoder import read_waves

    store, truth = bench_truth(home, "tune", seed)
    uris, voices = [], []
    for clip in store.clips().to_pylist():
        turns = truth.get(clip["recording_id"], [])
        voice, _ = evaluation.clip_truth(clip, turns)
        if voice and evaluation.main_voice_share(clip, turns) >= MAIN_VOICE:
            uris.append(clip["audio_uri"])
            voices.append(voice)
    return read_waves(store, uris), voices


def build(out: Path, stores: Sequence[tuple[str, int]]) -> int:
    """Train the layer on ``stores`` (home, corpus seed) and write the tensors that moved
    to ``out``; returns the number of training clips."""
    import torch

    from convoice.config import load_settings
    from convoice.engines import loaders
    from convoice.training import campplus
    from convoice.training.tracking import TrainingRun

    waves: list[FloatArray] = []
    voices: list[str] = []
    for home, seed in stores:
        w, v = truth_clips(home, seed)
        waves += w
        voices += v
    stats = campplus.window_stats("", waves)
    with tempfile.TemporaryDirectory(prefix="convoice-shipped-campplus-") as tmp:
        run = TrainingRun(Path(tmp), "campplus", "shipped")
        result = campplus.train_campplus("", stats, voices, load_settings().encoder, run)
        state = torch.load(result.weights, map_location="cpu", weights_only=True)
    base = loaders.campplus_model("").state_dict()
    moved = {k: v.numpy() for k, v in state.items() if not torch.equal(v, base[k])}
    np.savez_compressed(out, **moved)
    return len(waves)


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    stores = [(home, int(seed)) for home, seed in (a.rsplit(":", 1) for a in argv[1:])]
    n = build(Path(argv[0]), stores)
    print(f"{argv[0]}: trained on {n} clips of {len(stores)} stores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
