"""Who is who inside one recording: cluster the segmentation model's local speakers.

Nodes are (chunk, local speaker) pairs, or (``[diarization] cluster_unit =
"clip"``, the default) each clip of them. Each has one embedding and a weight
(seconds of speech). Two local speakers of the same chunk are different
people by construction: a cannot-link constraint. Two clips of the SAME
local speaker of a chunk carry no constraint: the segmentation model
sometimes gives two voices of one chunk one local label, and clips let the
clustering take them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class NodeClustering:
    labels: IntArray  # shape: (num_nodes,), cluster index per node, -1 when unassigned
    centroids: FloatArray  # shape: (num_clusters, dim), unit norm

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])


def normalize(x: FloatArray) -> FloatArray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-8)).astype(np.float32)


def centroids_of(
    embeddings: FloatArray, weights: npt.NDArray[np.float64], labels: IntArray
) -> FloatArray:
    """Weighted, normalised mean embedding of every cluster ``0..max(labels)``."""
    k = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    out = np.zeros((k, embeddings.shape[1]), dtype=np.float32)
    for c in range(k):
        members = labels == c
        out[c] = (embeddings[members] * weights[members, None]).sum(axis=0)
    return normalize(out)


def cluster_nodes(
    embeddings: FloatArray,
    weights: npt.NDArray[np.float64],
    groups: IntArray,
    threshold: float,
    max_clusters: int = 12,
    min_weight: float = 0.0,
    speakers: IntArray | None = None,
) -> NodeClustering:
    """Average-linkage clustering on cosine similarity with cannot-link groups.

    ``groups[i]`` is node i's chunk: nodes of one chunk never share a cluster,
    so no merge that would join them is ever made. With ``speakers`` (node i's
    local speaker in its chunk, e.g. when nodes are clips), only nodes of one
    chunk whose local speakers differ are kept apart. Clusters stop merging below
    ``threshold`` cosine similarity (or merge on down to ``max_clusters``). Clusters
    with less than ``min_weight`` seconds of speech are merged into their
    closest larger cluster that no cannot-link forbids (pyannote's
    ``min_cluster_size`` idea: a handful of short turns is rarely a new person).
    """
    n = embeddings.shape[0]
    if n == 0:
        return NodeClustering(
            np.zeros(0, dtype=np.int64), np.zeros((0, embeddings.shape[1]), np.float32)
        )
    if n == 1:
        return NodeClustering(np.zeros(1, dtype=np.int64), normalize(embeddings[:1]))
    forbid = cannot_link(groups, speakers)
    labels = _constrained_average_linkage(embeddings, forbid, threshold, max_clusters)
    labels = _absorb_small(embeddings, weights, forbid, labels, min_weight)
    labels = _relabel_by_weight(labels, weights)
    return NodeClustering(labels, centroids_of(embeddings, weights, labels))


def cannot_link(groups: IntArray, speakers: IntArray | None = None) -> npt.NDArray[np.bool_]:
    """Which pairs of nodes may never share a cluster: nodes of one group (chunk), or, with
    ``speakers``, nodes of one group whose local speakers differ. Shape (n, n)."""
    if speakers is not None and speakers.shape != groups.shape:
        raise ValueError(f"{len(speakers)} local speakers for {len(groups)} nodes")
    forbid = groups[:, None] == groups[None, :]
    if speakers is not None:
        forbid &= speakers[:, None] != speakers[None, :]
    return np.asarray(forbid)


def _absorb_small(
    embeddings: FloatArray,
    weights: npt.NDArray[np.float64],
    forbid: npt.NDArray[np.bool_],
    labels: IntArray,
    min_weight: float,
) -> IntArray:
    labels = labels.copy()
    totals = {int(c): float(weights[labels == c].sum()) for c in np.unique(labels)}
    large = [c for c, w in totals.items() if w >= min_weight]
    if not large or len(large) == len(totals):
        return labels
    centroids = centroids_of(embeddings, weights, labels)
    for small in sorted(set(totals) - set(large), key=lambda c: totals[c]):
        members = labels == small
        forbidden = {int(c) for c in labels[forbid[members].any(axis=0)]}
        candidates = [c for c in large if c not in forbidden]
        if candidates:
            sims = centroids[candidates] @ centroids[small]
            labels[members] = candidates[int(np.argmax(sims))]
    return labels


_RESCAN_ROWS = 256  # rows of the similarity matrix masked at a time (bounds the temporary)


def _constrained_average_linkage(
    embeddings: FloatArray, forbid: npt.NDArray[np.bool_], threshold: float, max_clusters: int
) -> IntArray:
    """Merge the most similar allowed pair until none reaches ``threshold``.

    Average linkage via the Lance-Williams update, on a matrix of n x n
    similarities (8 n^2 bytes: 47 MB for 2,430 clips, three hours of dense speech).
    Each row keeps its best allowed partner (the first column of its highest
    similarity), so a merge costs O(n) plus a rescan of the rows whose partner
    was one of the two merged: O(n^2) time in all on ordinary data, where
    masking the whole matrix at every merge cost O(n^3) (2,430 clips: minutes).
    The pair picked at every step is the one the whole-matrix ``argmax`` picks
    (the first in row-major order among equals), and the similarities are
    updated with the same arithmetic, so the labels are the same, bit for bit.
    """
    n = embeddings.shape[0]
    sims = (embeddings @ embeddings.T).astype(np.float64)  # shape: (n, n)
    forbid = forbid.copy()  # cannot-link (see cannot_link)
    np.fill_diagonal(forbid, True)
    sizes = np.ones(n)
    alive = np.ones(n, dtype=bool)
    labels = np.arange(n, dtype=np.int64)
    best = np.full(n, -np.inf)  # each row's highest allowed similarity
    partner = np.zeros(n, dtype=np.int64)  # the first column that has it

    def rescan(rows: IntArray) -> None:
        for start in range(0, len(rows), _RESCAN_ROWS):
            r = rows[start : start + _RESCAN_ROWS]
            masked = np.where(forbid[r] | ~alive[None, :], -np.inf, sims[r])
            cols = np.argmax(masked, axis=1)
            partner[r] = cols
            best[r] = masked[np.arange(len(r)), cols]
        best[~alive] = -np.inf

    rescan(np.arange(n, dtype=np.int64))
    clusters = n
    while clusters > 1:
        a = int(np.argmax(best))  # the first row holding the highest similarity
        b = int(partner[a])
        top = best[a]
        if not np.isfinite(top) or (top < threshold and clusters <= max_clusters):
            break
        sims[a] = (sizes[a] * sims[a] + sizes[b] * sims[b]) / (sizes[a] + sizes[b])
        sims[:, a] = sims[a]
        forbid[a] |= forbid[b]
        forbid[:, a] = forbid[a]
        sizes[a] += sizes[b]
        alive[b] = False
        labels[labels == b] = a
        clusters -= 1
        # Only column a changed (and b died): a row whose partner was a or b is rescanned,
        # any other row takes a when a now beats its partner (or ties it further left).
        stale = alive & ((partner == a) | (partner == b))
        stale[a] = True
        column = np.where(forbid[:, a] | ~alive, -np.inf, sims[:, a])
        wins = alive & ~stale & ((column > best) | ((column == best) & (a < partner)))
        partner[wins] = a
        best[wins] = column[wins]
        best[b] = -np.inf
        rescan(np.flatnonzero(stale))
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def _relabel_by_weight(labels: IntArray, weights: npt.NDArray[np.float64]) -> IntArray:
    """Number clusters 0, 1, ... by decreasing speech time; drop empty ids."""
    ids = [c for c in np.unique(labels) if c >= 0]
    order = sorted(ids, key=lambda c: -float(weights[labels == c].sum()))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(int(c), -1) for c in labels], dtype=np.int64)


def b_cubed(truth: list[str], predicted: list[str]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 of a clustering against reference labels."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted must have the same length")
    if not truth:
        return 1.0, 1.0, 1.0
    t = np.array(truth)
    p = np.array(predicted)
    precision = recall = 0.0
    for i in range(len(t)):
        same_p = p == p[i]
        same_t = t == t[i]
        both = float(np.sum(same_p & same_t))
        precision += both / float(np.sum(same_p))
        recall += both / float(np.sum(same_t))
    precision /= len(t)
    recall /= len(t)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
