"""A recording's clip embeddings: each clip's, and each clip-less local speaker's.

What the ``embed`` stage (:func:`convoice.tasks.stages.embed_speakers`)
computes once the encoders are loaded: resemblyzer's d-vectors of every clip
and, with CAM++ identifying, CAM++'s of every clip and local speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convoice.models import embed, labelling
from convoice.models.diarize import Segmentation
from convoice.records import FloatArray, Region


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
    samples: FloatArray, seg: Segmentation, encoder: Any, identity: str, campplus: Any = None
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
    found = embed.embed_regions_campplus(campplus, samples, regions)
    id_clips, id_nodes = _split(found.vectors, n_clips, len(nodes), missing)
    return Embeddings(clips, no_nodes, id_clips, id_nodes, identity, found.windows[:n_clips])
