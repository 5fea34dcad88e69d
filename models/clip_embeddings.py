"""A recording's clip embeddings: each clip's, and each clip-less local speaker's.

What the ``embed`` stage (:func:`convoice.tasks.stages.embed_speakers`)
computes once the encoders are loaded: resemblyzer's d-vectors of every clip
and, with CAM++ identifying, CAM++'s of every clip and local speaker.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convoice.models import embed, labelling
from convoice.models.diarize import ClipRegion, Segmentation
from convoice.models.voices import least_part, pause_cuts
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
    part_cut: list[float] = field(default_factory=list)  # per clip, that least alike pause (nan)

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
    samples: Samples,
    seg: Segmentation,
    encoder: Any,
    identity: str,
    campplus: Any = None,
    parts: bool = True,
) -> Embeddings:
    """One embedding per clip, plus one per local speaker without clips.

    ``encoder``: the resemblyzer voice encoder. ``identity``: "campplus" adds
    CAM++ embeddings (``campplus``: the loaded CAM++ model), which then alone
    cluster the local speakers (resemblyzer embeds only the clips). ``parts``: also
    embed each clip's parts across its pauses and keep their least similarity (the pause
    rule, ``[identity] two_voice_pause_check``; the cut); False leaves ``part_similarity``
    and ``part_cut`` empty and saves those CAM++ passes.
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
    if parts:
        found, similar, least = _campplus_with_parts(campplus, samples, seg, seg.clips, regions)
    else:
        found, similar, least = embed.embed_regions_campplus(campplus, samples, regions), [], []
    id_clips, id_nodes = _split(found.vectors[: len(regions)], n_clips, len(nodes), missing)
    windows = found.windows[:n_clips]
    return Embeddings(clips, no_nodes, id_clips, id_nodes, identity, windows, similar, least)


def _campplus_with_parts(
    campplus: Any,
    samples: Samples,
    seg: Segmentation,
    clips: Sequence[ClipRegion],
    regions: Sequence[Region | list[Region]],
) -> tuple[embed.WindowedEmbeddings, list[float], list[float]]:
    """CAM++ of ``regions`` (``clips``' first), and per clip the least cosine of its parts
    across a pause and that pause (nan: none)."""
    cuts = [clip_cuts(seg, c) for c in clips]
    parts: list[Region | list[Region]] = [
        r for c, mine in zip(clips, cuts, strict=True) for r in _parts(c.region, mine)
    ]
    found = embed.embed_regions_campplus(campplus, samples, [*regions, *parts])
    pairs = found.vectors[len(regions) :].reshape(-1, 2, found.vectors.shape[1])
    bounds = np.cumsum([0, *(len(mine) for mine in cuts)])
    found_least = [
        least_part(pairs[a:b, 0], pairs[a:b, 1], mine)
        for (a, b), mine in zip(itertools.pairwise(bounds), cuts, strict=True)
    ]
    return found, [sim for sim, _ in found_least], [cut for _, cut in found_least]


def clip_cuts(seg: Segmentation, clip: ClipRegion) -> list[float]:
    """The pauses inside a clip its two voices would change in (:func:`pause_cuts`)."""
    return pause_cuts(seg.turns[clip.turn].pieces, clip.region, PAUSE_S, PART_S)


def _parts(clip: Region, cuts: list[float]) -> list[Region]:
    """Per cut, the clip before it and the clip after it."""
    return [r for cut in cuts for r in (Region(clip.start, cut), Region(cut, clip.end))]


def cut_at_voice_changes(
    samples: Samples,
    seg: Segmentation,
    emb: Embeddings,
    encoder: Any,
    campplus: Any,
    below: float,
    min_half_s: float = PART_S,
) -> tuple[Segmentation, Embeddings]:
    """``seg`` with every clip whose parts across a pause are less alike than ``below`` cut in
    two at that pause (the least alike one), where both halves last ``min_half_s`` or more,
    and ``emb`` with the halves embedded afresh.

    Such a clip holds two voices by the pause rule (:mod:`convoice.models.voices`), and the
    voices change at the pause: cut there, each half can be labelled with its own speaker
    instead of the whole clip going to review. A half keeps its clip's segmentation
    evidence (``other_voice``, ``two_voices``, ``edge_overlap``, ``overlap_nearby``) and gets
    its own windows and pause check, so a half that still holds two voices is flagged.
    With no CAM++ (resemblyzer identifies) nothing is cut.
    """
    if not emb.part_cut:
        return seg, emb
    todo = {
        k for k, (sim, cut) in enumerate(zip(emb.part_similarity, emb.part_cut, strict=True))
        if sim < below and not math.isnan(cut)
        and min(cut - seg.clips[k].region.start, seg.clips[k].region.end - cut) >= min_half_s
    }  # fmt: skip
    if not todo:
        return seg, emb
    halves: list[ClipRegion] = []
    for k in sorted(todo):
        clip, cut = seg.clips[k], emb.part_cut[k]
        for region in (Region(clip.region.start, cut), Region(cut, clip.region.end)):
            halves.append(dataclasses.replace(clip, region=region))
    regions: list[Region | list[Region]] = [h.region for h in halves]
    vectors = embed.embed_regions(encoder, samples, regions)
    found, similar, least = _campplus_with_parts(campplus, samples, seg, halves, regions)
    clips: list[ClipRegion] = []
    rows: list[int] = []  # per new clip: its old clip's row, or -(1 + its half's row)
    half = 0
    for k, clip in enumerate(seg.clips):
        if k not in todo:
            clips.append(clip)
            rows.append(k)
            continue
        for _ in range(2):
            clips.append(halves[half])
            rows.append(-1 - half)
            half += 1

    def pick(old: Sequence[Any] | FloatArray, new: Sequence[Any] | FloatArray) -> list[Any]:
        return [old[r] if r >= 0 else new[-1 - r] for r in rows]

    cut_emb = dataclasses.replace(
        emb,
        clips=np.stack(pick(emb.clips, vectors)).astype(np.float32),
        identity_clips=np.stack(pick(emb.identity_clips, found.vectors)).astype(np.float32),
        clip_windows=pick(emb.clip_windows, found.windows),
        part_similarity=pick(emb.part_similarity, similar),
        part_cut=pick(emb.part_cut, least),
    )
    return dataclasses.replace(seg, clips=clips), cut_emb
