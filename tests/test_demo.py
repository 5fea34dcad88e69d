"""`convoice demo`, the README's main job, end to end in a fresh store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd


def test_demo_ingests_by_url_releases_and_prints_what_it_made(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "CONVOICE_HOME": str(home), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "convoice.cli.root", "demo", "--workdir", str(tmp_path / "media")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    summary = re.search(
        r"demo done: (\d+) recordings, (\d+) clips, ([\d.]+) h raw, ([\d.]+) h kept, "
        r"(\d+) speakers in the registry, (\d+) clips sent to review, (\d+) items skipped; "
        r"dataset version (v\d+)",
        out,
    )
    assert summary, out[-2000:]
    recordings, clips, _, _, speakers, review, skipped, version = summary.groups()
    assert (recordings, speakers, skipped, version) == ("4", "5", "1", "v1")
    assert int(clips) >= 40 and int(review) < int(clips)
    assert "not_creative_commons" in out  # the unlicensed video was gated out, with its reason
    released = pd.read_parquet(home / "releases" / "v1" / "clips.parquet")
    assert len(released) == int(clips)
    recs = pd.read_parquet(home / "releases" / "v1" / "recordings.parquet")
    assert recs["url"].str.startswith("http://127.0.0.1:").all()  # ingested by URL

    # the same command again into the same store: the same videos, nothing ingested twice
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 already done" in " ".join(again.stdout.split()), again.stdout[-2000:]
    rows = pd.read_parquet(home / "releases" / "v2" / "clips.parquet")
    assert len(rows) == int(clips) and rows["clip_id"].is_unique
