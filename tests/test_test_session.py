"""The test session cleans up after itself: a CI runner or a developer's /tmp keeps nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
QUICK_TEST = (
    "test_deploy_files.py::test_every_variable_has_a_value_and_env_example_has_no_stray_ones"
)


def test_a_test_session_leaves_no_prefect_home_or_cache_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVOICE_TEST_CACHE"}
    env["TMPDIR"] = str(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / QUICK_TEST)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("convoice-test-"))
    assert left == [], f"the session left {left} in its temporary directory"
