"""The B-cubed loss taken apart by the decision that made it (models/identity_errors.py)."""

from __future__ import annotations

import pytest

from convoice.models import evaluation
from convoice.models.identity_errors import ClipIdentity, ErrorKind, decompose, wrong_label_kind


def clip(voice: str, rec: str, local: str, ingest: str, final: str = "") -> ClipIdentity:
    return ClipIdentity(voice, rec, local, ingest, final or ingest, 2.0)


# Voices A, B, C over recordings r1-r4. r1: A and B clustered as one speaker (B intrudes);
# r2: A split over two speakers; r3: A given a new id by the registry; r4: C matched to B's
# id by the registry; consolidation merged r4's second speaker (C) into A's id.
CLIPS = [
    clip("A", "r1", "S0", "a"),
    clip("A", "r1", "S0", "a"),
    clip("A", "r1", "S0", "a"),
    clip("B", "r1", "S0", "a"),  # (a) an intruder in A's recording speaker
    clip("A", "r2", "S0", "a"),
    clip("A", "r2", "S1", "x"),  # (b) A's second recording speaker in r2
    clip("A", "r3", "S0", "y"),  # (c) a new id for A
    clip("B", "r2", "S2", "b"),
    clip("B", "r3", "S1", "b"),
    clip("C", "r4", "S0", "b"),  # (d) C took B's id
    clip("C", "r4", "S1", "c", "a"),  # (e) consolidation merged c into a
]


def test_the_kinds_add_up_to_b_cubed() -> None:
    d = decompose(CLIPS)
    p, r, f1 = evaluation.b_cubed([c.voice for c in CLIPS], [c.final_id for c in CLIPS])
    assert d.precision == pytest.approx(p) and d.recall == pytest.approx(r)
    assert d.f1 == pytest.approx(f1)
    for kind in ErrorKind:
        assert d.precision_loss[kind] + d.recall_loss[kind] > 0, kind


def test_each_kind_is_charged_where_it_was_made() -> None:
    d = decompose(CLIPS)
    assert d.by_voice[("A", ErrorKind.CLUSTER_SPLIT)] > 0
    assert d.by_voice[("A", ErrorKind.REGISTRY_SPLIT)] > 0
    assert ("A", ErrorKind.REGISTRY_MERGE) not in d.by_voice
    assert d.by_pair[("C", "B", ErrorKind.REGISTRY_MERGE)] > 0
    assert d.by_pair[("C", "A", ErrorKind.CONSOLIDATION)] > 0
    assert d.by_pair[("B", "A", ErrorKind.CLUSTER_MERGE)] > 0
    # a merge of B's recording speakers in r2 and r3 under one id is no loss
    assert all(k[:2] != ("B", "B") for k in d.by_pair)
    clean = decompose([clip("A", "r1", "S0", "a"), clip("B", "r1", "S1", "b")])
    assert clean.f1 == 1.0 and not clean.by_pair and not clean.by_voice


def test_wrong_labels_get_their_kind() -> None:
    mapping = {"a": "A", "b": "B"}
    kinds = [wrong_label_kind(i, CLIPS, mapping) for i in range(len(CLIPS))]
    assert kinds[0] is None and kinds[7] is None
    assert kinds[3] == ErrorKind.CLUSTER_MERGE
    assert kinds[5] == ErrorKind.CLUSTER_SPLIT
    assert kinds[6] == ErrorKind.REGISTRY_SPLIT
    assert kinds[9] == ErrorKind.REGISTRY_MERGE
    assert kinds[10] == ErrorKind.CONSOLIDATION


def test_the_bench_block_from_clip_rows() -> None:
    from convoice.models.identity_errors import errors_by_kind, render_errors

    rng = __import__("numpy").random.default_rng(0)
    voice_vec = {"A": rng.normal(size=8), "B": rng.normal(size=8)}

    def row(n: int, rec: str, local: str, sid: str, status: str) -> dict[str, object]:
        return dict(
            clip_id=f"c{n}", recording_id=rec, recording_speaker=local, speaker_id=sid,
            start=10.0 * n, end=10.0 * n + 5, speaker_status=status, status=status,
            speaker_embedding=list(voice_vec["A" if n < 4 else "B"] + rng.normal(size=8) * 0.1),
        )  # fmt: skip

    # A in r1 and r2 (r2's A got a new id "a2" at ingest), B in r3 matched to A's id "a".
    clips = [
        row(0, "r1", "S0", "a", "accepted"),
        row(1, "r1", "S0", "a", "accepted"),
        row(2, "r1", "S0", "a", "accepted"),
        row(3, "r2", "S0", "a2", "review"),
        row(4, "r3", "S0", "a", "accepted"),
    ]
    truth = {
        rec: [
            evaluation.RefTurn(10.0 * n, 10.0 * n + 5, "A" if n < 4 else "B", "") for n in range(5)
        ]
        for rec in ("r1", "r2", "r3")
    }
    block = errors_by_kind(clips, {f"c{n}": c["speaker_id"] for n, c in enumerate(clips)}, truth)
    kinds = block["kinds"]
    assert kinds["registry_split"][1] > 0 and kinds["registry_merge"][0] > 0
    assert kinds["cluster_merge"] == [0.0, 0.0, block["bcubed"][2]]
    assert block["wrong_labels"]["accepted"] == {"registry_merge": 1}
    assert block["wrong_labels"]["review"] == {"registry_split": 1}
    a, b = block["pairs"][0][:2]
    assert (a, b) == ("A", "B") and block["pairs"][0][4] < 0.9
    text = "\n".join(render_errors(block))
    assert "(c) known voice given a new id" in text and "accepted: registry_merge 1" in text
