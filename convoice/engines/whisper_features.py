"""Whisper's log-mel features, the same numbers whatever threads the process has.

faster-whisper computes its features with numpy, and the mel product
(``mel_filters @ magnitudes``) goes to OpenBLAS, which splits it differently
on one thread and on two: the features then differ in the last bit
(1.2e-7), and that is enough to flip Whisper's near ties ("day, the" on two
threads, "day. The" on one). A Dask worker given one thread and the flow's
own process given two would then label the same clip differently. Computed
on one BLAS thread always, the features (and so the transcripts) no longer
depend on where they were made; the product is small, so it costs nothing
measurable. The limit is the process's: :func:`~convoice.engines.blas.blas_threads`
keeps other threads' products from running under it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor

from convoice.engines.blas import blas_threads


class SteadyFeatures(FeatureExtractor):
    """faster-whisper's :class:`FeatureExtractor`, its product on one BLAS thread."""

    def __call__(
        self, waveform: np.ndarray, padding: int = 160, chunk_length: int | None = None
    ) -> np.ndarray:
        with blas_threads(1):  # and no other BLAS user of the process meanwhile
            return super().__call__(waveform, padding=padding, chunk_length=chunk_length)


def steady(model: Any) -> Any:
    """``model`` (a ``WhisperModel``) with :class:`SteadyFeatures` in place of its own."""
    model.feature_extractor = SteadyFeatures(**model.feat_kwargs)
    return model
