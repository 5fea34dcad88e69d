"""Identities that heal: re-check the whole speaker registry after an ingest.

Matching one recording at a time against the registry is greedy: a voice
that came out a little different in its first recording can end up with two
ids (a split) for good. Consolidation looks at the registry as a whole:

- two speakers may merge only when their centroids (on the identity
  embedding, CAM++ by default) are at least ``threshold`` alike;
- an id a person gave a clip, or made, is never merged away (its speaker
  may absorb a machine id; two such ids never merge), so what people
  labelled reads as they labelled it;
- two speakers that share a recording never merge (a recording's speakers
  are different people), nor do two that a person told apart (a clip a person
  moved from one to the other, see :func:`person_splits`); a merged group
  inherits all of that, so it can never come to hold two of them;
- merges are taken closest pair first, and a pair merges only when the two
  groups' centroids (exact: the registry keeps sums) are still alike, so one
  chain of near neighbours cannot pull unlike voices together;
- with :class:`Guards` (the default of ``[consolidation]``), a pair merges only
  when one of the two is heard in few recordings (the piece a weak match left
  behind; two speakers each heard in several recordings were told apart by
  matching again and again), each is the other's nearest speaker it may merge
  with, and no third speaker comes within ``margin`` of the merged centroid
  (two close voices of one engine look like one split person; a third voice
  close to both is the sign of it);
- with a pitch veto (``Registry.pitch_veto`` semitones, ``[identity]
  pitch_veto_semitones``), two groups whose clips' pitch ranges lie further apart
  than that never merge (:func:`convoice.models.pitch.apart`: a woman and a man
  the encoder hears alike); a merged group's range is both ranges.

The cost is near-linear in speakers: candidate pairs come from an inverted
file (spherical k-means cells, each speaker looked up in its ``probe``
nearest cells, dense similarities inside a cell only), never from all pairs.
The merge step reads no clip, only which recordings each speaker is in.

A person's merge already is one speaker in the registry, and an id people
gave or made is never split, so consolidation cannot undo what people decided.

Before the merges, :func:`plan_healing` splits ids that hold two voices: an
id's recordings (their centroids) fall in two groups less than
``SplitRule.threshold`` alike, and the smaller group then joins a third id in
the merge step (see the README, "Splitting an id that holds two voices").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convoice.models.pitch import apart, pitch_range
from convoice.operational_settings import SPLIT_THRESHOLD
from convoice.records import FloatArray, MachineMerge, MachineSplit, canonical

IntArray = npt.NDArray[np.int64]
_NO_INTS: IntArray = np.zeros(0, dtype=np.int64)
_NO_FLOATS: FloatArray = np.zeros(0, dtype=np.float32)
EXACT_BELOW = 4096  # fewer speakers than this: every pair, in blocks
BLOCK = 2048


class ConsolidationError(ValueError):
    """Inputs that do not describe one registry (lengths, dimensions, thresholds)."""


@dataclass(frozen=True)
class Guards:
    """Conditions a pair must meet besides the threshold (see the module docstring).

    ``max_recordings``: the smaller of the two (in recordings) is heard in at most
    this many (0: any). ``margin``: the pair's similarity must exceed the merged
    centroid's similarity to every third speaker near either of them (candidate
    pairs at ``margin`` below the threshold) by this much; each must also be the other's nearest
    speaker it may merge with.
    """

    max_recordings: int = 1
    margin: float = 0.10

    def __post_init__(self) -> None:
        if self.max_recordings < 0:
            raise ConsolidationError(f"max_recordings must be >= 0, got {self.max_recordings}")
        if not 0.0 <= self.margin <= 2.0:
            raise ConsolidationError(f"margin must be a cosine gap in [0, 2], got {self.margin}")


@dataclass(frozen=True)
class Registry:
    """What consolidation needs to know of every speaker (row ``i`` of each array)."""

    ids: Sequence[str]
    sums: FloatArray  # (n, d) sums of clip embeddings (exact centroids when normalised)
    rank: Sequence[tuple[int, int, str]]  # smaller keeps its id: (unnamed, -clips, first_seen)
    recordings: Sequence[frozenset[str]]  # the recordings each speaker has clips in
    pinned: Sequence[bool] = ()  # ids people gave or made: never merged away (empty: none)
    pitch: npt.NDArray[np.float64] | None = None  # (n, 2) lowest, highest clip F0 (Hz; NaN unknown)
    pitch_veto: float = 0.0  # semitones: groups further apart in pitch never merge (0: off)

    def pins(self) -> list[bool]:
        """``pinned`` with one entry per speaker (all False when empty)."""
        return list(self.pinned) or [False] * len(self.ids)


def unit_rows(matrix: FloatArray) -> FloatArray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _exact_pairs(unit: FloatArray, threshold: float) -> list[tuple[float, int, int]]:
    out: list[tuple[float, int, int]] = []
    n = unit.shape[0]
    for lo in range(0, n, BLOCK):
        sims = unit[lo : lo + BLOCK] @ unit.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if lo + r < c:
                out.append((float(sims[r, c]), lo + r, c))
    return out


def _cells(unit: FloatArray, n_cells: int, seed: int, iterations: int = 4) -> FloatArray:
    """Spherical k-means centres of a sample of ``unit`` (unit rows)."""
    rng = np.random.default_rng(seed)
    sample = unit[rng.choice(unit.shape[0], size=min(unit.shape[0], 20 * n_cells), replace=False)]
    centres = sample[rng.choice(sample.shape[0], size=n_cells, replace=False)].copy()
    for _ in range(iterations):
        nearest = np.argmax(sample @ centres.T, axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, nearest, sample)
        empty = np.linalg.norm(sums, axis=1) == 0
        sums[empty] = centres[empty]
        centres = unit_rows(sums)
    return centres


def candidate_pairs(
    unit: FloatArray, threshold: float, probe: int = 10, seed: int = 0
) -> list[tuple[float, int, int]]:
    """Pairs of rows of ``unit`` at least ``threshold`` alike: (similarity, i, j), i < j.

    Exact below :data:`EXACT_BELOW` rows; above, an inverted file of
    ``sqrt(probe * n)`` cells (which balances placing rows against comparing
    them: about ``2 sqrt(probe) n^1.5 d`` multiply-adds in all): every row
    lives in its closest cell and is compared with the rows living in its
    ``probe`` closest cells (two alike rows rarely sit further apart).
    """
    from threadpoolctl import threadpool_limits

    n = unit.shape[0]
    if n < EXACT_BELOW:
        return _exact_pairs(unit, threshold)
    with threadpool_limits(1):  # many small products: BLAS threads only wait on each other
        return _inverted_file_pairs(unit, threshold, probe, seed)


def _inverted_file_pairs(
    unit: FloatArray, threshold: float, probe: int, seed: int
) -> list[tuple[float, int, int]]:
    """Every row lives in its closest cell and looks for partners in its ``probe`` closest."""
    n = unit.shape[0]
    centres = _cells(unit, int(np.sqrt(probe * n)), seed)
    n_cells = centres.shape[0]
    probe = min(probe, n_cells)
    home = np.empty(n, dtype=np.int64)
    near = np.empty((n, probe), dtype=np.int64)

    def place(lo: int) -> None:
        """Rows ``lo:lo + BLOCK``: the closest cell, and the ``probe`` closest in any order."""
        sims = unit[lo : lo + BLOCK] @ centres.T
        home[lo : lo + BLOCK] = np.argmax(sims, axis=1)
        near[lo : lo + BLOCK] = np.argpartition(-sims, probe - 1, axis=1)[:, :probe]

    # The products release the GIL: blocks and cells in threads use every core (a shared
    # machine's scheduler also gives a process its share per runnable thread).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(place, range(0, n, BLOCK)))
    residents = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[residents], np.arange(n_cells + 1))
    flat = near.reshape(-1)
    askers = np.argsort(flat, kind="stable")
    ask_bounds = np.searchsorted(flat[askers], np.arange(n_cells + 1))

    def in_cell(cell: int) -> tuple[IntArray, IntArray, FloatArray]:
        """(i, j, similarity) of the alike pairs of one cell's residents and askers."""
        members = residents[bounds[cell] : bounds[cell + 1]]
        queries = askers[ask_bounds[cell] : ask_bounds[cell + 1]] // probe
        if len(members) == 0 or len(queries) == 0:
            return _NO_INTS, _NO_INTS, _NO_FLOATS
        sims = unit[queries] @ unit[members].T
        rows, cols = np.nonzero(sims >= threshold)
        first, second = queries[rows], members[cols]
        other = first != second
        return first[other], second[other], sims[rows, cols][other]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        parts = list(pool.map(in_cell, range(n_cells)))  # in cell order, as one loop would
    first = np.concatenate([p[0] for p in parts])
    second = np.concatenate([p[1] for p in parts])
    sims = np.concatenate([p[2] for p in parts]).astype(np.float64)
    low, high = np.minimum(first, second), np.maximum(first, second)
    # a pair met in several cells keeps the similarity of the last cell that met it
    _, last = np.unique((low * n + high)[::-1], return_index=True)
    keep = len(low) - 1 - last
    return list(zip(sims[keep].tolist(), low[keep].tolist(), high[keep].tolist(), strict=True))


class _Groups:
    """Union-find over speakers with each group's sum, recordings and forbidden partners."""

    def __init__(self, registry: Registry, apart: Mapping[int, set[int]]) -> None:
        n = len(registry.ids)
        self.parent = list(range(n))
        self.sums = registry.sums.astype(np.float64)
        self.recordings: list[frozenset[str]] = list(registry.recordings)
        self.apart = {i: set(v) for i, v in apart.items()}
        self.rank = registry.rank
        self.pinned = registry.pins()
        self.members: dict[int, list[int]] = {}  # root -> rows (only for merged groups)
        self.veto = registry.pitch_veto if registry.pitch is not None else 0.0
        self.pitch = (
            np.asarray(registry.pitch, np.float64).copy()
            if registry.pitch is not None
            else np.full((n, 2), np.nan)
        )

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def similarity(self, a: int, b: int) -> float:
        x, y = self.sums[a], self.sums[b]
        denom = float(np.linalg.norm(x) * np.linalg.norm(y))
        return float(x @ y) / denom if denom > 0 else -1.0

    def refusal(self, a: int, b: int) -> str:
        """Why the groups ``a`` and ``b`` may never merge, however alike; "" if they may."""
        if self.recordings[a] & self.recordings[b]:
            return "a recording in common"
        if self.pinned[a] and self.pinned[b]:
            return "both ids people gave or made"
        if self.veto > 0 and apart(self.pitch[a].tolist(), self.pitch[b].tolist(), self.veto):
            return f"pitch ranges more than {self.veto:g} semitones apart"
        if any(self.find(x) == b for x in self.apart.get(a, ())):
            return "told apart by a person"
        return ""

    def may_merge(self, a: int, b: int) -> bool:
        return not self.refusal(a, b)

    def union(self, a: int, b: int) -> tuple[int, int]:
        """Merge the groups ``a`` and ``b``; (kept root, merged root)."""
        kept, gone = (
            (a, b) if (-self.pinned[a], self.rank[a]) <= (-self.pinned[b], self.rank[b]) else (b, a)
        )
        self.parent[gone] = kept
        self.pinned[kept] = self.pinned[kept] or self.pinned[gone]
        self.sums[kept] += self.sums[gone]
        self.recordings[kept] = self.recordings[kept] | self.recordings[gone]
        self.recordings[gone] = frozenset()
        self.pitch[kept] = pitch_range([*self.pitch[kept], *self.pitch[gone]])
        self.members[kept] = self.members.pop(kept, [kept]) + self.members.pop(gone, [gone])
        partners = self.apart.pop(gone, set()) | self.apart.get(kept, set())
        if partners:  # a partner's own set names ``gone``, whose root is now ``kept``
            self.apart[kept] = partners
        return kept, gone


def _neighbour_roots(
    groups: _Groups, near: Mapping[int, list[int]], roots: tuple[int, ...]
) -> set[int]:
    """The groups (roots) holding a candidate partner of any member of ``roots``."""
    out: set[int] = set()
    for root in roots:
        for row in groups.members.get(root, [root]):
            out.update(groups.find(k) for k in near.get(row, ()))
    return out - set(roots)


def _guarded(
    groups: _Groups,
    near: Mapping[int, list[int]],
    a: int,
    b: int,
    sim: float,
    guards: Guards,
    ids: Sequence[str] = (),
) -> str:
    """Why the roots ``a``, ``b`` (``sim`` alike) may not merge under ``guards``; "" if they may.

    ``ids``: the registry's ids, to name the third speaker in the reason (row numbers without).
    """
    fewest = min(len(groups.recordings[a]), len(groups.recordings[b]))
    if guards.max_recordings and fewest > guards.max_recordings:
        return f"both heard in more than {guards.max_recordings} recordings"
    merged = groups.sums[a] + groups.sums[b]
    merged_norm = float(np.linalg.norm(merged))
    for k in sorted(_neighbour_roots(groups, near, (a, b))):
        name = ids[k] if ids else f"row {k}"
        for one in (a, b):
            if groups.may_merge(one, k) and groups.similarity(one, k) > sim:
                return f"not each other's nearest ({name} at {groups.similarity(one, k):.3f})"
        k_norm = float(np.linalg.norm(groups.sums[k]))
        third = float(merged @ groups.sums[k]) / (merged_norm * k_norm) if k_norm else -1.0
        if sim - third < guards.margin:
            return f"a third speaker at {third:.3f} ({name})"
    return ""


def _told_apart(ids: Sequence[str], apart: Iterable[tuple[str, str]]) -> dict[int, set[int]]:
    """Row index -> rows a person told it apart from (both ways; unknown ids ignored)."""
    position = {s: i for i, s in enumerate(ids)}
    out: dict[int, set[int]] = {}
    for first, second in apart:
        if first in position and second in position and first != second:
            out.setdefault(position[first], set()).add(position[second])
            out.setdefault(position[second], set()).add(position[first])
    return out


def _check(registry: Registry, threshold: float) -> None:
    """Raise :class:`ConsolidationError` unless ``registry``'s rows agree and ``threshold``
    is a cosine."""
    n = len(registry.ids)
    if registry.sums.shape[0] != n or len(registry.recordings) != n or len(registry.rank) != n:
        raise ConsolidationError("ids, sums, rank and recordings must have one row per speaker")
    if len(registry.pinned) not in (0, n):
        raise ConsolidationError("pinned must be empty or have one entry per speaker")
    if registry.pitch is not None and np.shape(registry.pitch) != (n, 2):
        raise ConsolidationError(f"pitch must be (speakers, 2), got {np.shape(registry.pitch)}")
    if not -1.0 <= threshold <= 1.0:
        raise ConsolidationError(f"threshold must be a cosine in [-1, 1], got {threshold}")


def _candidates(
    registry: Registry,
    threshold: float,
    probe: int,
    guards: Guards | None,
    lowest: float = 1.0,
) -> tuple[list[tuple[float, int, int]], dict[int, list[int]]]:
    """The candidate pairs (closest first) down to the planning floor, or ``lowest`` where it
    is lower, and each speaker's neighbours the guards look at (with ``guards`` only).

    With guards, third speakers within ``margin`` below the threshold are neighbours too.
    """
    floor = threshold if guards is None else max(-1.0, threshold - guards.margin)
    pairs = sorted(
        candidate_pairs(unit_rows(registry.sums), min(floor, lowest), probe), reverse=True
    )
    near: dict[int, list[int]] = {}
    if guards is not None:
        for sim, i, j in pairs:
            if sim >= floor:
                near.setdefault(i, []).append(j)
                near.setdefault(j, []).append(i)
    return pairs, near


def plan_consolidation(
    registry: Registry,
    threshold: float,
    apart: Iterable[tuple[str, str]] = (),
    probe: int = 10,
    guards: Guards | None = None,
) -> list[MachineMerge]:
    """The merges that heal ``registry``: closest pair first, each one allowed (see module).

    ``apart``: pairs of speaker ids a person told apart. ``guards``: the further
    conditions of :class:`Guards` (None: the threshold alone). Returns merges in the
    order made; each ``kept`` is the speaker that lives on at that moment
    (follow chains with :func:`convoice.records.canonical`).
    """
    _check(registry, threshold)
    if len(registry.ids) < 2:
        return []
    groups = _Groups(registry, _told_apart(registry.ids, apart))
    pairs, near = _candidates(registry, threshold, probe, guards)
    merges: list[MachineMerge] = []
    for _, i, j in pairs:
        a, b = groups.find(i), groups.find(j)
        if a == b or not groups.may_merge(a, b):
            continue
        sim = groups.similarity(a, b)
        if sim < threshold:
            continue
        if guards is not None and _guarded(groups, near, a, b, sim, guards):
            continue
        kept, gone = groups.union(a, b)
        why = (
            f"centroid cosine {sim:.3f} >= {threshold:.3f}, no recording in common,"
            " never told apart by a person"
        )
        if guards is not None:
            why += f"; each the other's nearest, no third speaker within {guards.margin:.2f}" + (
                f", one heard in at most {guards.max_recordings} recording(s)"
                if guards.max_recordings
                else ""
            )
        merges.append(MachineMerge(registry.ids[gone], registry.ids[kept], round(sim, 4), why))
    return merges


@dataclass(frozen=True)
class HeldApart:
    """Two speakers consolidation leaves apart, and the first rule that holds them."""

    first: str
    second: str
    similarity: float  # centroid cosine
    reason: str  # "" when nothing holds them: the merge step would merge them now


def held_apart(
    registry: Registry,
    threshold: float,
    apart: Iterable[tuple[str, str]] = (),
    probe: int = 10,
    guards: Guards | None = None,
    floor: float = 0.30,
) -> list[HeldApart]:
    """Every pair of ``registry``'s speakers at least ``floor`` alike, closest first, with
    the rule of :func:`plan_consolidation` that refuses it on the registry as it stands
    (no merge made): a recording in common, both pinned, a pitch veto, a person's split, the
    threshold, or a guard (naming the third speaker). A consolidated registry's pairs of one
    voice show which rule keeps each split (the README's "What consolidation cannot heal").
    """
    _check(registry, threshold)
    if len(registry.ids) < 2:
        return []
    groups = _Groups(registry, _told_apart(registry.ids, apart))
    pairs, near = _candidates(registry, threshold, probe, guards, floor)  # plan's neighbours
    out = []
    for _, i, j in pairs:
        sim = groups.similarity(i, j)
        if sim < floor:
            continue
        reason = groups.refusal(i, j)
        if not reason and sim < threshold:
            reason = f"under the threshold {threshold:.3f}"
        if not reason and guards is not None:
            reason = _guarded(groups, near, i, j, sim, guards, registry.ids)
        out.append(HeldApart(registry.ids[i], registry.ids[j], round(sim, 4), reason))
    return out


# -- splits: one id holding two voices -------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """One row per (speaker, recording): the clips a speaker has in that recording.

    ``speaker`` indexes :class:`Registry` rows; ``sums`` are sums of the clips'
    unit embeddings (a fresh centroid); ``counted`` the part of ``sums`` the
    registry's own sum holds (the clips it absorbed); ``clips`` how many clips.
    """

    speaker: IntArray
    recording: Sequence[str]
    sums: FloatArray
    counted: FloatArray
    clips: IntArray

    def __post_init__(self) -> None:
        m = len(self.speaker)
        if not (len(self.recording) == self.sums.shape[0] == self.counted.shape[0] == m):
            raise ConsolidationError("parts: one row of speaker, recording, sums, counted each")
        if len(self.clips) != m:
            raise ConsolidationError("parts: one clip count per row")


@dataclass(frozen=True)
class SplitRule:
    """When an id is two voices: its recordings fall in two groups less than ``threshold`` alike.

    A split is kept only when a piece then joins a third identity (the merge
    step reattaches it): an id whose recordings merely vary stays whole.
    """

    threshold: float = SPLIT_THRESHOLD  # ``[consolidation] split_threshold``'s default
    iterations: int = 10

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ConsolidationError(f"split threshold must be a cosine, got {self.threshold}")


def two_groups(unit: FloatArray, weights: FloatArray, iterations: int = 10) -> IntArray | None:
    """Two-means of unit rows (seeded by the least alike pair); 0/1 per row, None if one group."""
    sims = unit @ unit.T
    i, j = np.unravel_index(int(np.argmin(sims)), sims.shape)
    label = (sims[:, j] > sims[:, i]).astype(np.int64)
    for _ in range(iterations):
        if label.min() == label.max():
            return None
        first = unit_rows((unit[label == 0] * weights[label == 0, None]).sum(0, keepdims=True))
        second = unit_rows((unit[label == 1] * weights[label == 1, None]).sum(0, keepdims=True))
        new = (unit @ second[0] > unit @ first[0]).astype(np.int64)
        if np.array_equal(new, label):
            break
        label = new
    return None if label.min() == label.max() else label


def piece_id(speaker_id: str, recordings: Iterable[str]) -> str:
    """The id a split's piece gets (same inputs, same id)."""
    from convoice.records import stable_id

    return stable_id("spk", "split", speaker_id, *sorted(recordings), length=12)


def _first_is_piece(
    clips: IntArray, sums: npt.NDArray[np.float64], own: npt.NDArray[np.float64]
) -> bool:
    """Whether the first of two groups (their clip counts, their sums) is the piece that splits off.

    The group of fewer clips; on a tie, the one less like ``own`` (the id's registry
    sum): the id keeps the voice it is most like. Only an exact tie of both leaves it
    to the second group. Nothing here depends on the order or the names of the rows.
    """
    if clips[0] != clips[1]:
        return bool(clips[0] < clips[1])
    norms = np.linalg.norm(sums, axis=1) * float(np.linalg.norm(own))
    alike = (sums @ own.astype(np.float64)) / np.where(norms > 0, norms, 1.0)
    return bool(alike[0] < alike[1])


def split_candidates(registry: Registry, parts: Parts, rule: SplitRule) -> list[MachineSplit]:
    """Every unpinned id whose recordings fall in two groups less than ``rule.threshold`` alike.

    Per id, a two-means of its per-recording centroids (weighted by their
    sums' norms); an id heard in two recordings is its two recordings (all
    of those at once). The cost is linear in parts. The group of fewer clips
    is the piece; of two groups with as many clips, the one less like the id's own
    centroid (:func:`_first_is_piece`), so the piece never depends on how the ids or the
    recordings are named (their order decided it before, and with it the merges after).
    """
    pinned = np.asarray(registry.pins(), bool)
    order = np.argsort(parts.speaker, kind="stable")
    bounds = np.searchsorted(parts.speaker[order], np.arange(len(registry.ids) + 1))
    count = np.diff(bounds)
    sums = parts.sums.astype(np.float64)
    norms = np.linalg.norm(sums, axis=1)
    found: list[tuple[int, IntArray, float]] = []  # (row, the piece's parts, cosine)
    pair_rows = np.flatnonzero((count == 2) & ~pinned)
    first, second = order[bounds[pair_rows]], order[bounds[pair_rows] + 1]
    denom = norms[first] * norms[second]
    cosine = np.einsum("ij,ij->i", sums[first], sums[second]) / np.where(denom > 0, denom, 1.0)
    own = registry.sums.astype(np.float64)
    for k in np.flatnonzero((cosine < rule.threshold) & (denom > 0)):
        one, two, row = int(first[k]), int(second[k]), int(pair_rows[k])
        fewer = one if _first_is_piece(parts.clips[[one, two]], sums[[one, two]], own[row]) else two
        found.append((row, np.array([fewer], np.int64), float(cosine[k])))
    for row in np.flatnonzero((count > 2) & ~pinned):
        mine = order[bounds[row] : bounds[row + 1]]
        if np.any(norms[mine] == 0):
            continue
        label = two_groups(unit_rows(sums[mine].astype(np.float32)), norms[mine], rule.iterations)
        if label is None:
            continue
        one, two = sums[mine][label == 0].sum(0), sums[mine][label == 1].sum(0)
        alike = float(one @ two / (np.linalg.norm(one) * np.linalg.norm(two)))
        if alike >= rule.threshold:
            continue
        counts = np.array([parts.clips[mine][label == g].sum() for g in (0, 1)], np.int64)
        zero = _first_is_piece(counts, np.stack([one, two]), own[row])
        found.append((int(row), mine[label == (0 if zero else 1)], alike))
    out: list[MachineSplit] = []
    for row, piece, alike in sorted(found, key=lambda f: f[0]):
        recordings = tuple(sorted(parts.recording[k] for k in piece))
        speaker_id = registry.ids[row]
        out.append(
            MachineSplit(
                speaker_id,
                piece_id(speaker_id, recordings),
                recordings,
                round(alike, 4),
                f"its recordings fall in two groups at centroid cosine {alike:.3f}"
                f" < {rule.threshold:.3f}",
            )
        )
    return out


def with_splits(registry: Registry, parts: Parts, splits: Sequence[MachineSplit]) -> Registry:
    """``registry`` after ``splits``: each piece a new row with a fresh centroid (its clips' sum).

    The split id keeps its sum less what the piece's clips had added to it.
    """
    if not splits:
        return registry
    position = {s: i for i, s in enumerate(registry.ids)}
    ids, sums = list(registry.ids), registry.sums.astype(np.float64)
    rank, recordings = list(registry.rank), list(registry.recordings)
    pinned = registry.pins()
    pitch = None if registry.pitch is None else [tuple(p) for p in registry.pitch.tolist()]
    extra: list[np.ndarray] = []
    of_row: dict[int, list[int]] = {}
    wanted = {position[s.split] for s in splits}
    for k, row in enumerate(parts.speaker.tolist()):
        if row in wanted:
            of_row.setdefault(row, []).append(k)
    for split in splits:
        row = position[split.split]
        moved = set(split.recordings)
        mine = [k for k in of_row.get(row, []) if parts.recording[k] in moved]
        sums[row] -= parts.counted[mine].sum(0)
        extra.append(parts.sums[mine].astype(np.float64).sum(0))
        clips = int(parts.clips[mine].sum())
        ids.append(split.piece)
        rank.append((rank[row][0], -clips, rank[row][2]))
        recordings[row] = recordings[row] - moved
        recordings.append(frozenset(moved))
        pinned.append(False)
        if pitch is not None:  # the piece's pitch is not known here: it never vetoes
            pitch.append((float("nan"), float("nan")))
    return Registry(
        ids=ids,
        sums=np.vstack([sums, np.stack(extra)]).astype(np.float32),
        rank=rank,
        recordings=recordings,
        pinned=pinned,
        pitch=None if pitch is None else np.array(pitch, np.float64).reshape(-1, 2),
        pitch_veto=registry.pitch_veto,
    )


def plan_healing(
    registry: Registry,
    parts: Parts,
    threshold: float,
    rule: SplitRule | None,
    apart: Iterable[tuple[str, str]] = (),
    probe: int = 10,
    guards: Guards | None = None,
) -> tuple[list[MachineSplit], list[MachineMerge]]:
    """Splits, then merges (see :func:`plan_consolidation`) on the registry they leave.

    Candidates come from :func:`split_candidates`; merges are planned on the
    registry with all of them, and a split is kept only when its piece or
    the id it left joins a third identity there. The merges are then planned
    again with the kept splits only, each piece told apart from its id.
    ``rule`` None: merges only.
    """
    apart = list(apart)
    if rule is None:
        return [], plan_consolidation(registry, threshold, apart, probe, guards)
    candidates = split_candidates(registry, parts, rule)
    if candidates:
        trial = plan_consolidation(
            with_splits(registry, parts, candidates), threshold, apart, probe, guards
        )
        steps = {m.merged: m.kept for m in trial}
        final: dict[str, set[str]] = {}
        for member in set(steps) | set(steps.values()):
            final.setdefault(canonical(member, steps), set()).add(member)
        kept = []
        for split in candidates:
            piece, rest = canonical(split.piece, steps), canonical(split.split, steps)
            joined = (final.get(piece, set()) | final.get(rest, set())) - {split.piece, split.split}
            if piece != rest and joined:
                kept.append(split)
        candidates = kept
    merges = plan_consolidation(
        with_splits(registry, parts, candidates),
        threshold,
        [*apart, *((s.split, s.piece) for s in candidates)],
        probe,
        guards,
    )
    return candidates, merges
