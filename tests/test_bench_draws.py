"""``convoice bench --draws N``: the half's voices dealt into N corpora, each figure's spread."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from convoice.bench.quality import check_draws
from convoice.bench.result import Draw, render_draws, render_kept
from convoice.bench.splits import Split
from convoice.cli.bench import DEFAULT_DRAWS, BenchOptions, draws_of
from convoice.cli.root import app


def _draw(seed: int, bcubed: float, right: float, real: float | None = None) -> Draw:
    quality = {"clips": 100.0 + seed, "bcubed_f1_cross_episode": bcubed}
    quality["accepted_speaker_accuracy"] = right
    if real is not None:
        quality["bcubed_f1_real"] = real
    return Draw(seed, quality)


def test_every_draw_is_printed_with_the_mean_and_range_of_each_figure() -> None:
    lines = render_draws([_draw(11, 0.9, 1.0, 0.8), _draw(12, 0.8, 0.9), _draw(13, 0.7, 0.95, 0.6)])
    assert "3 corpora" in lines[0]
    assert lines[1].split()[1:6] == ["seed", "11", "seed", "12", "seed"]
    rows = {line[:34].strip(): line[34:].split() for line in lines[2:]}
    bcubed = ["0.9000", "0.8000", "0.7000", "0.8000", "0.7000-0.9000", ">=", "0.97", "/", "0.95"]
    assert rows["cross-episode B-cubed F1"] == bcubed
    assert rows["accepted speaker labels right"][3:5] == ["0.9500", "0.9000-1.0000"]
    assert rows["clips"] == ["111", "112", "113", "112.0", "111-113"]
    assert "real people" not in rows  # one draw has no real person: no mean over two of three


def test_the_draws_ece_is_pooled_beside_what_a_calibrated_score_would_show() -> None:
    sure = Draw(11, {"speaker_confidence_ece": 0.1}, "", [0.9] * 10, [True] * 10)
    unsure = Draw(12, {"speaker_confidence_ece": 0.1}, "", [0.9] * 10, [True] * 8 + [False] * 2)
    lines = render_draws([sure, unsure])
    pooled = lines[-1]
    assert "pooled over the 2 draws (20 clips): 0.0000;" in pooled  # 18 of 20 right at 0.9
    floor = float(pooled.split("these confidences: ")[1].split()[0])
    assert 0.0 < floor < 0.2
    assert render_draws([Draw(11, {}), Draw(12, {})])[-1].startswith("  figure")  # none kept


def test_one_draw_adds_nothing_to_the_report() -> None:
    assert render_draws([_draw(11, 0.9, 1.0)]) == []
    assert render_draws([]) == []


def test_draws_default_to_several_on_a_generated_half_and_one_on_a_fixed_corpus() -> None:
    assert draws_of(BenchOptions()) == DEFAULT_DRAWS > 1
    assert draws_of(BenchOptions(split=Split.TUNE)) == DEFAULT_DRAWS
    assert draws_of(BenchOptions(quick=True)) == 1
    assert draws_of(BenchOptions(split=Split.SEVEN)) == 1
    assert draws_of(BenchOptions(split=Split.TUNE, draws=5)) == 5
    check_draws(4, quick=False, split="report", corpus_dir=None)
    with pytest.raises(ValueError, match="at least 1"):
        check_draws(0, quick=False, split="report", corpus_dir=None)
    with pytest.raises(ValueError, match="generated half"):
        check_draws(2, quick=False, split="report", corpus_dir="/tmp/own")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--quick", "--draws", "2"], "generated half"), (["--draws", "0"], "at least 1")],
)
def test_bench_refuses_draws_it_cannot_deal_before_any_work(args: list[str], message: str) -> None:
    done = CliRunner().invoke(app, ["bench", "--no-naive", *args])
    assert done.exit_code == 2, done.output
    assert message in " ".join(done.output.split())


def test_kept_tuning_stores_print_the_calibrate_command_that_reads_them() -> None:
    kept = [(11, "/k/tune-seed11"), (12, "/k/tune-seed12")]
    lines = render_kept(kept, tuning_half=True)
    assert lines[1:3] == ["  seed 11: /k/tune-seed11", "  seed 12: /k/tune-seed12"]
    homes = "--bench-home /k/tune-seed11 --bench-home /k/tune-seed12"
    seeds = "--bench-seed 11 --bench-seed 12"
    assert lines[3].endswith(f"convoice calibrate --dry-run {homes} {seeds}")
    assert "calibrate" not in " ".join(render_kept([(11, "/k/report-seed11")], tuning_half=False))
    assert render_kept([], tuning_half=True) == []


def test_keep_stores_is_refused_with_a_mode_that_keeps_no_store(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["bench", "--languages", "--keep-stores", str(tmp_path / "k")])
    assert done.exit_code == 2, done.output
    assert "Invalid value for --keep-stores" in done.output and "not of --languages" in done.output
    assert not (tmp_path / "k").exists()
