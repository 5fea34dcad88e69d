"""A recording's clip embeddings: each clip's, and each clip-less local speaker's.

What the ``embed`` stage (:func:`convoice.tasks.stages.embed_speakers`)
computes once the encoders are loaded: resemblyzer's d-vectors of every clip
and, with CAM++ identifying, CAM++'s of every clip and local speaker.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convoice.models import embed, labelling
from convoice.models.diarize import ClipRegion, Segmentation
from convoice.models.voices import least_part_similarity, pause_cuts
from convoice.records import FloatArray, Region, Samples

PAUSE_S = 0.12  # a pause a voice may change in (as [clips] min_pause_s: where clips are cut)
PART_S = 1.0  # each part of a clip compared across a pause is at least this long


@dataclass(frozen=True)
class Embeddings:
    """Each clip's (and each clip-less local speaker's) embeddings.

    ``clips``/``nodes``: resemblyzer's d-vectors (kept on every clip).
    ``identity_clips``/``identity_nodes``: the identity encoder's (CAM++,
    192-d), or the d-vectors themselves when resemblyzer identifies.
    """

    clips: FloatArray  # shape: (num_clips, 256)
    nodes: FloatArray  # shape: (num_nodes, 256); zero rows for nodes with clips (all: CAM++)
    identity_clips: FloatArray  # shape: (num_clips, dim)
    identity_nodes: FloatArray  # shape: (num_nodes, dim)
    identity_encoder: str = "resemblyzer"
    clip_windows: list[FloatArray] = field(default_factory=list)  # CAM++ windows per clip
    part_similarity: list[float] = field(default_factory=list)  # per clip, across its pauses

    @property
    def separate_identity(self) -> bool:
        """Whether clips carry an identity embedding of their own (``speaker_embedding``)."""
        return self.identity_encoder != "resemblyzer"


def _split(vectors: FloatArray, num_clips: int, num_nodes: int, missing: list[int]) -> tuple[
    FloatArray, FloatArray
]:  # fmt: skip
    node_vectors = np.zeros((num_nodes, vectors.shape[1]), dtype=np.float32)
    node_vectors[missing] = vectors[num_clips:]
    return vectors[:num_clips], node_vectors


def embed_recording(
    samples: Samples, seg: Segmentation, encoder: Any, identity: str, campplus: Any = None
) -> Embeddings:
    """One embedding per clip, plus one per local speaker without clips.

    ``encoder``: the resemblyzer voice encoder. ``identity``: "campplus" adds
    CAM++ embeddings (``campplus``: the loaded CAM++ model), which then alone
    cluster the local speakers (resemblyzer embeds only the clips).
    """
    nodes, pieces = labelling.node_regions(seg)
    with_clips = {seg.turns[c.turn].node for c in seg.clips}
    regions: list[Region | list[Region]] = [c.region for c in seg.clips]
    missing = [i for i, n in enumerate(nodes) if n not in with_clips]
    regions += [pieces[i] for i in missing]
    n_clips = len(seg.clips)
    if identity == "resemblyzer":
        clips, node_vectors = _split(
            embed.embed_regions(encoder, samples, regions), n_clips, len(nodes), missing
        )
        return Embeddings(clips, node_vectors, clips, node_vectors, identity)
    clips = embed.embed_regions(encoder, samples, regions[:n_clips])
    no_nodes = np.zeros((len(nodes), clips.shape[1]), dtype=np.float32)
    cuts = [clip_cuts(seg, c) for c in seg.clips]
    parts: list[Region | list[Region]] = [
        r for c, mine in zip(seg.clips, cuts, strict=True) for r in _parts(c.region, mine)
    ]
    found = embed.embed_regions_campplus(campplus, samples, regions + parts)
    id_clips, id_nodes = _split(found.vectors[: len(regions)], n_clips, len(nodes), missing)
    pairs = found.vectors[len(regions) :].reshape(-1, 2, found.vectors.shape[1])
    bounds = np.cumsum([0, *(len(mine) for mine in cuts)])
    similar = [
        least_part_similarity(pairs[a:b, 0], pairs[a:b, 1]) for a, b in itertools.pairwise(bounds)
    ]
    windows = found.windows[:n_clips]
    return Embeddings(clips, no_nodes, id_clips, id_nodes, identity, windows, similar)


def clip_cuts(seg: Segmentation, clip: ClipRegion) -> list[float]:
    """The pauses inside a clip its two voices would change in (:func:`pause_cuts`)."""
    return pause_cuts(seg.turns[clip.turn].pieces, clip.region, PAUSE_S, PART_S)


def _parts(clip: Region, cuts: list[float]) -> list[Region]:
    """Per cut, the clip before it and the clip after it."""
    return [r for cut in cuts for r in (Region(clip.start, cut), Region(cut, clip.end))]
