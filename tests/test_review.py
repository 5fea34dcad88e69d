"""Review in a real Label Studio: push, annotate through its API, pull, and again.

The server is the real ``label-studio`` package, installed on first use into
``.venv-labelstudio`` and started on a free 127.0.0.1 port with a temporary
data folder. Annotations are created through its REST API exactly as the
labeling page submits them (the prediction's results, edited, plus the
annotator's answers). A small proxy in front of it plays a failing server.
"""

from __future__ import annotations

import csv
import http.client
import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from convoice.config import environment
from convoice.records import ClipStatus, LabelSource, Speaker, StoredClip
from convoice.review import server as review_server
from convoice.review.annotations import (
    AnnotationError,
    decision_labels,
    new_speaker_id,
    parse_annotation,
    utc_iso,
)
from convoice.review.decisions import plan_pull
from convoice.review.layout import (
    NEW_SPEAKER,
    UNKNOWN_SPEAKER,
    PushReport,
    QueueKind,
    audit_count,
    expected_wrong_labels,
    label_config,
    queue_sizes,
    review_queue,
    uncertainty_score,
)
from convoice.storage import Store
from convoice.storage import review_state as review_store
from convoice.storage.rows import clip_records, label_records, recording_records
from convoice.synth.serve import free_port

# A real server, installed on first use, and two real ingest runs: minutes, not seconds.
pytestmark = pytest.mark.slow

TITLE = "Con Voice review (tests)"
# Every clip needs review, whatever the machine: a transcript confidence is at most 1.0, so
# 1.01 sends all of them. (A threshold inside the observed range made the queue's length
# depend on the CPU's floating point: a clip at 0.9307 against 0.93 went either way.)
ROUTING = (
    "[routing]\nmin_speaker_confidence = 0.99\nmin_transcript_confidence = 1.01\n"
    "[review]\naudit_share = 0.0\n"  # the review queue only (the audit sample has its own test)
)


# -- pure: no server ---------------------------------------------------------


def _task(result: list[dict[str, Any]], updated: str = "2025-01-02T03:04:05.678901Z") -> dict:
    return {
        "id": 7,
        "data": {"clip_id": "clip_x"},
        "annotations": [{"id": 70, "completed_by": 3, "updated_at": updated, "result": result}],
    }


def _choice(name: str, *values: str) -> dict[str, Any]:
    return {
        "from_name": name,
        "to_name": "audio",
        "type": "choices",
        "value": {"choices": list(values)},
    }


def test_queue_puts_the_most_uncertain_first_and_skips_pushed_clips() -> None:
    rows = [
        {
            "clip_id": "a",
            "status": "review",
            "speaker_confidence": 0.9,
            "transcript_confidence": 0.9,
        },
        {
            "clip_id": "b",
            "status": "review",
            "speaker_confidence": 0.1,
            "transcript_confidence": 0.9,
        },
        {
            "clip_id": "c",
            "status": "accepted",
            "speaker_confidence": 0.0,
            "transcript_confidence": 0,
        },
        {
            "clip_id": "d",
            "status": "review",
            "speaker_confidence": 0.5,
            "transcript_confidence": 0.5,
        },
    ]
    rows = [StoredClip.from_row(r) for r in rows]
    assert [r.clip_id for r in review_queue(rows)] == ["b", "d", "a"]
    assert [r.clip_id for r in review_queue(rows, exclude={"b"})] == ["d", "a"]


def test_a_queue_of_one_label_kind_holds_that_kind_in_review_least_sure_first() -> None:
    def clip(cid: str, spk: str, txt: str, s: float, t: float) -> StoredClip:
        both = "accepted" if spk == txt == "accepted" else "review"
        return StoredClip.from_row(
            {
                "clip_id": cid,
                "status": both,
                "speaker_status": spk,
                "transcript_status": txt,
                "speaker_confidence": s,
                "transcript_confidence": t,
            }
        )

    rows = [
        clip("fair_speaker_bad_text", "review", "review", 0.80, 0.10),  # product 0.08
        clip("bad_speaker", "review", "review", 0.30, 0.70),  # product 0.21
        clip("sure_speaker", "accepted", "review", 0.999, 0.05),
        clip("only_speaker", "review", "accepted", 0.50, 0.99),
        clip("done", "accepted", "accepted", 0.999, 0.99),
    ]
    # the clip queue: most wrong labels expected first (1.1, 1.0, 0.95, 0.5), where the
    # product of both probabilities would put sure_speaker first (0.05, 0.08, 0.21, 0.495)
    ids = [r.clip_id for r in review_queue(rows)]
    assert ids == ["fair_speaker_bad_text", "bad_speaker", "sure_speaker", "only_speaker"]
    assert expected_wrong_labels(rows[2]) == pytest.approx(0.95)  # its speaker is not in review
    by_speaker = [r.clip_id for r in review_queue(rows, kind=QueueKind.SPEAKER)]
    assert by_speaker == ["bad_speaker", "only_speaker", "fair_speaker_bad_text"]
    by_text = [r.clip_id for r in review_queue(rows, kind=QueueKind.TRANSCRIPT)]
    assert by_text == ["sure_speaker", "fair_speaker_bad_text", "bad_speaker"]
    # the audit sample of a kind: that label accepted by the machine, whatever the other's
    with_audit = review_queue(rows, audit_share=1.0, kind=QueueKind.SPEAKER)
    assert [r.clip_id for r in with_audit[3:]] == ["done", "sure_speaker"]
    assert audit_count(with_audit, QueueKind.SPEAKER) == 2  # sure_speaker's clip is in review
    assert [r.clip_id for r in review_queue(rows, audit_share=1.0)[4:]] == ["done"]
    # rows written before per-kind statuses: the clip's own status stands for both
    old = StoredClip.from_row({"clip_id": "old", "status": "review", "speaker_confidence": 0.2})
    assert [r.clip_id for r in review_queue([old], kind=QueueKind.SPEAKER)] == ["old"]
    with pytest.raises(ValueError, match="must be one of clip, speaker, transcript"):
        QueueKind.parse("speakers")
    sizes = {q.queue: q for q in queue_sizes(rows, audit_share=1.0)}
    assert [sizes[k].clips for k in ("clip", "speaker", "transcript")] == [4, 3, 3]
    assert sizes["speaker"].expected_wrong == pytest.approx(0.2 + 0.7 + 0.5)
    assert sizes["clip"].expected_wrong == pytest.approx(1.1 + 1.0 + 0.95 + 0.5)
    assert (sizes["clip"].audit, sizes["speaker"].audit, sizes["transcript"].audit) == (1, 2, 2)
    report = PushReport("local:8089", needing_review=3, remaining=3, queue=QueueKind.SPEAKER)
    assert report.summary().endswith("(3 clips need review of their speaker label)")


def test_audit_sample_is_a_stable_share_of_unreviewed_accepted_clips() -> None:
    rows = [{"clip_id": f"c{i}", "status": "accepted"} for i in range(2000)]
    rows += [{"clip_id": "r", "status": "review", "speaker_confidence": 0.1}]
    rows += [{"clip_id": f"h{i}", "status": "accepted", "labelled_by": "ann"} for i in range(500)]
    rows = [StoredClip.from_row(r) for r in rows]
    rows_queued = review_queue(rows, audit_share=0.1)
    queue = [r.clip_id for r in rows_queued]
    assert queue[0] == "r"  # clips needing review come first
    audited = queue[1:]
    assert audit_count(rows_queued) == len(audited)  # what a push reports apart
    report = PushReport("local:8089", needing_review=len(queue), remaining=len(queue))
    assert report.summary().endswith(f"({len(queue)} clips need review)")
    report.audit = len(audited)
    assert report.summary().endswith(
        f"({len(queue)} clips need review, {len(audited)} of them accepted ones in the audit "
        "sample)"
    )
    assert 150 <= len(audited) <= 250  # about 10 % of 2000
    assert not [c for c in audited if c.startswith("h")]  # a person looked at those already
    again = [r.clip_id for r in review_queue(list(reversed(rows)), audit_share=0.1)]
    assert again == queue  # the same clips, whatever the order of the rows
    assert [r.clip_id for r in review_queue(rows)] == ["r"]  # no audit by default
    assert uncertainty_score(0.5, 0.5) == pytest.approx(0.25)


def test_every_malformed_annotation_names_its_task() -> None:
    known = frozenset({"spk_a", "spk_b"})
    users = {3: "ann@example.org"}
    accept = _choice("decision", "accept")
    cases: dict[str, list[Any]] = {
        "no accept/reject decision": [_choice("speaker", "spk_a")],
        "not in the registry": [_choice("speaker", "spk_zz"), accept],
        "accepted without a speaker": [accept],
        "exactly one choice": [_choice("speaker", "spk_a", "spk_b"), accept],
        "merged with itself": [_choice("speaker", "spk_a"), _choice("same_as", "spk_a"), accept],
        "new or unknown": [_choice("speaker", NEW_SPEAKER), _choice("same_as", "spk_a"), accept],
        "unknown quality flags": [_choice("speaker", "spk_a"), _choice("quality", "x"), accept],
        "malformed result item": ["oops"],
        "'maybe' is neither accept nor reject": [
            _choice("speaker", "spk_a"),
            _choice("decision", "maybe"),
        ],
    }
    for expected, result in cases.items():
        task = _task(result)
        with pytest.raises(AnnotationError, match=expected) as err:
            parse_annotation(task, task["annotations"][0], known, users)
        assert "task 7 (annotation 70)" in str(err.value)


def test_decisions_become_labels_with_who_and_when() -> None:
    task = _task(
        [
            _choice("speaker", UNKNOWN_SPEAKER),
            {
                "from_name": "transcript",
                "to_name": "audio",
                "type": "textarea",
                "value": {"text": [" Hello there. "]},
            },
            _choice("decision", "accept"),
        ]
    )
    decision = parse_annotation(task, task["annotations"][0], frozenset({"spk_a"}), {3: "a@x.org"})
    assert (decision.annotator, decision.at) == ("a@x.org", "2025-01-02T03:04:05.678+00:00")
    rows = decision_labels(decision)  # who spoke is unknown: transcript kept, still in review
    assert [(r.field, r.value) for r in rows] == [("text", "Hello there.")]
    assert rows[0].task_id == "7" and rows[0].labelled_by == "a@x.org"


def _speaker(speaker_id: str, vector: np.ndarray, n: int) -> Speaker:
    return Speaker(speaker_id, vector.astype(np.float32) * n, n, float(n), 1, "t0", "t0")


def test_plan_is_idempotent_and_merges_sum_the_registry() -> None:
    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 256)))
    speakers = {"spk_a": _speaker("spk_a", a, 4), "spk_b": _speaker("spk_b", b, 2)}
    rows = {
        "clip_1": {
            "speaker_id": "spk_b",
            "review_reasons": ["uncertain_identity"],
            "duration": 2.0,
            "embedding": a.astype(np.float32),
        },
        "clip_2": {
            "speaker_id": "spk_b",
            "review_reasons": [],
            "duration": 3.0,
            "embedding": b.astype(np.float32),
        },
    }
    machine = {k: StoredClip.from_row({"clip_id": k, **row}) for k, row in rows.items()}
    task = _task(
        [_choice("speaker", "spk_b"), _choice("same_as", "spk_a"), _choice("decision", "accept")]
    )
    task["data"]["clip_id"] = "clip_1"
    plan = plan_pull([task], {3: "a@x.org"}, machine, [], speakers, [], set(), {}, "now")
    assert [(m.merged, m.kept) for m in plan.merges] == [("spk_b", "spk_a")]
    assert plan.removed_speakers == ["spk_b"]
    kept = {s.speaker_id: s for s in plan.speakers}["spk_a"]
    assert kept.n_clips == 4 + 2 + 1  # merged, then the confirmed clip strengthens it
    np.testing.assert_allclose(kept.vector_sum, 4 * a + 2 * b + a, rtol=1e-5, atol=1e-5)
    relabelled = {(r.clip_id, r.field): r.value for r in plan.labels}
    assert relabelled[("clip_1", "speaker_id")] == relabelled[("clip_2", "speaker_id")] == "spk_a"
    applied = {(70, "2025-01-02T03:04:05.678+00:00")}
    contributions = {c.clip_id: c for c in plan.contributions}
    registry = {"spk_a": kept}
    merges = plan.merges
    again = plan_pull(
        [task], {}, machine, plan.labels, registry, merges, applied, contributions, "later"
    )
    assert (again.labels, again.merges, again.speakers, again.already_applied) == ([], [], [], 1)


def test_the_labeling_interface_names_every_control() -> None:
    config = label_config()
    for name in ("audio", "clip", "speaker", "same_as", "transcript", "quality", "decision"):
        assert f'name="{name}"' in config
    assert "$speaker_choices" in config and "$merge_choices" in config


# -- a real Label Studio -----------------------------------------------------


@dataclass
class Server:
    home: Path
    url: str
    port: int
    token: str = field(repr=False)


def test_a_label_studio_venv_with_sentry_sdk_3_is_mended_before_start() -> None:
    """sentry-sdk 3 stops Label Studio 1.23.2 at start ("Unknown option
    'send_default_pii'"). A venv made before the pin (no record of it, sentry-sdk 3
    inside) is installed over with the pins, so the server starts again."""
    program = review_server.ensure_venv()
    venv = program.parent.parent
    python = str(venv / "bin" / "python")
    marker = venv / review_server.REQUIREMENTS_FILE
    subprocess.run([python, "-m", "pip", "install", "-q", "sentry-sdk==3.0.0"], check=True)
    marker.write_text("label-studio==1.23.2\n")  # what such a venv would have recorded
    assert review_server.ensure_venv() == program
    sentry = subprocess.run(
        [python, "-c", "import sentry_sdk; print(sentry_sdk.VERSION)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert int(sentry.split(".")[0]) < 3, sentry
    assert marker.read_text().splitlines() == list(review_server.LABEL_STUDIO_REQUIREMENTS)


@pytest.fixture(scope="module")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real Label Studio on a free 127.0.0.1 port; its document root is the test store."""
    home = tmp_path_factory.mktemp("review-home")
    program = review_server.ensure_venv()  # installs label-studio once (a few minutes)
    server = review_server.LocalServer(home / "labelstudio", home, free_port())
    proc, creds = review_server.start(server, program, timeout_s=600)
    assert proc is not None
    overrides = {"CONVOICE_REVIEW__PORT": str(server.port), "CONVOICE_REVIEW__PROJECT_TITLE": TITLE}
    try:
        with environment(overrides):
            yield Server(home, server.url, server.port, creds.token)
    finally:
        review_server.stop_process(proc.pid)


def _sources(corpus: Any, base_url: str, path: Path, episodes: range) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "license"])
        for ep in [corpus.episodes[i] for i in episodes]:
            writer.writerow([base_url + quote(ep.media_path.name), "CC-BY-4.0"])
    return path


class Proxy:
    """Label Studio behind a switchable fault: busy answers, lost responses."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.busy = 0  # answer this many next requests 503, without forwarding them
        self.lose_imports = 0  # forward this many imports but lose their answer (502)
        self.seen: list[tuple[str, str, int]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.busy > 0:
                    proxy.busy -= 1
                    return self.reply(503, b'{"detail": "busy"}', [])
                skip = {"host", "connection", "content-length", "transfer-encoding"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=120)
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if self.command == "POST" and "/import" in self.path and proxy.lose_imports > 0:
                    proxy.lose_imports -= 1
                    return self.reply(502, b"bad gateway", [])
                self.reply(response.status, data, response.getheaders())

            def reply(self, status: int, data: bytes, headers: list[tuple[str, str]]) -> None:
                proxy.seen.append((self.command, self.path, status))
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("connection", "content-length", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Reviewed:
    home: Path
    config: Path
    store: Store
    server: Server
    corpus: Any
    base_url: str
    queue: list[str]  # clip ids needing review, most uncertain first
    state: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def reviewed(prefect_harness, labelstudio, small_corpus, served_corpus) -> Reviewed:  # type: ignore[no-untyped-def]
    """Two episodes ingested by the real flow, with strict routing so many clips need review."""
    from convoice.flows.ingest import ingest_flow

    home = labelstudio.home
    config = home / "config.toml"
    config.write_text(ROUTING)
    sources = _sources(small_corpus, served_corpus, home / "sources.csv", range(2))
    report = ingest_flow(sources_file=str(sources), home=str(home), config=str(config))
    assert len(report.recordings) == 2
    store = Store(str(home))
    queue = [r.clip_id for r in review_queue(clip_records(store.materialized_clips()))]
    clips = store.materialized_clips().num_rows
    assert len(queue) == clips >= 8, f"{len(queue)} of {clips} clips need review"
    assert len(store.speakers()) >= 2
    return Reviewed(home, config, store, labelstudio, small_corpus, served_corpus, queue)


def _sdk(server: Server) -> Any:
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=server.url, api_key=server.token)


def _project_tasks(server: Server) -> list[dict[str, Any]]:
    sdk = _sdk(server)
    project = next(p for p in sdk.projects.list() if p.title == TITLE)
    tasks = [t.dict() for t in sdk.tasks.list(project=project.id, fields="all", page_size=500)]
    return sorted(tasks, key=lambda t: t["id"])


def test_push_in_parts_through_a_failing_server_without_duplicates(
    reviewed: Reviewed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convoice.flows.review import ReviewIncomplete, review_push_flow

    home, n = str(reviewed.home), len(reviewed.queue)
    first = review_push_flow(home=home, limit=3)
    assert (first.pushed, first.remaining, first.needing_review) == (3, n - 3, n)
    assert [t["data"]["clip_id"] for t in _project_tasks(reviewed.server)] == reviewed.queue[:3]

    with monkeypatch.context() as patch:  # nobody listens there: a clear error, nothing lost
        patch.setenv("CONVOICE_REVIEW__PORT", str(free_port()))
        patch.setenv("CONVOICE_REVIEW__RETRIES", "1")
        with pytest.raises(ReviewIncomplete) as err:
            review_push_flow(home=home)
    report = err.value.report
    assert "could not" in report.error and "after 2 attempts" in report.error
    assert "convoice review serve" in report.error and reviewed.server.token not in report.error
    assert (report.pushed, report.remaining) == (0, n)

    proxy = Proxy(reviewed.server.port)  # busy twice, then an import whose answer is lost
    proxy.busy, proxy.lose_imports = 2, 1
    try:
        with monkeypatch.context() as patch:
            patch.setenv("CONVOICE_REVIEW__URL", proxy.url)
            patch.setenv("CONVOICE_REVIEW__TOKEN", reviewed.server.token)
            patch.setenv("CONVOICE_REVIEW__RETRIES", "3")
            rest = review_push_flow(home=home)
    finally:
        proxy.close()
    assert [s for _, _, s in proxy.seen].count(503) == 2 and proxy.lose_imports == 0
    assert (rest.pushed, rest.already_in_project, rest.remaining) == (n - 3, 3, 0)

    again = review_push_flow(home=home)
    assert (again.pushed, again.already_in_project) == (0, n)
    tasks = _project_tasks(reviewed.server)
    assert [t["data"]["clip_id"] for t in tasks] == reviewed.queue  # no duplicate, in order
    for task in tasks:  # scored by how sure the machine is of both labels
        data = task["data"]
        sure = data["speaker_confidence"] * data["transcript_confidence"]
        assert task["predictions"][0]["score"] == pytest.approx(sure, abs=1e-6)
        prediction = task["predictions"][0]
        assert prediction["model_version"].startswith("convoice-")
        assert {r["from_name"] for r in prediction["result"]} >= {"clip", "speaker"}
        assert task["data"]["review_reasons"]
    reviewed.state["tasks"] = tasks


def test_the_task_audio_is_the_clip_with_context_served_by_label_studio(
    reviewed: Reviewed,
) -> None:
    import httpx

    task = _pushed_tasks(reviewed)[0]
    url = reviewed.server.url + task["data"]["audio"]
    assert httpx.get(url).status_code in (401, 403, 404)  # not without a login
    answer = httpx.get(url, headers={"Authorization": f"Token {reviewed.server.token}"})
    assert answer.status_code == 200
    path = reviewed.home / "check.flac"
    path.write_bytes(answer.content)
    info = soundfile.info(path)
    clip = task["data"]["clip_end"] - task["data"]["clip_start"]
    assert clip < info.duration <= clip + 4.01
    region = next(r for r in task["predictions"][0]["result"] if r["from_name"] == "clip")
    offset = task["data"]["clip_start"] - task["data"]["context_start"]
    assert region["value"]["start"] == pytest.approx(offset, abs=1e-3)


def _pushed_tasks(reviewed: Reviewed) -> list[dict[str, Any]]:
    """The project's tasks; pushes the queue first when no earlier test did (``-k`` runs)."""
    if "tasks" not in reviewed.state:
        from convoice.flows.review import review_push_flow

        review_push_flow(home=str(reviewed.home))
        reviewed.state["tasks"] = _project_tasks(reviewed.server)
    tasks: list[dict[str, Any]] = reviewed.state["tasks"]
    return tasks


# The page's <audio> elements as JSON: which one is the task's, and what it is doing.
_AUDIO_STATE = """Array.from(document.querySelectorAll('audio')).map(a => ({
    src: a.src, readyState: a.readyState, networkState: a.networkState, paused: a.paused,
    currentTime: a.currentTime, duration: a.duration, muted: a.muted,
    error: a.error && a.error.message, connected: a.isConnected}))"""


def test_the_labeling_page_loads_a_task_and_plays_its_audio(reviewed: Reviewed) -> None:
    """Headless Chromium (Debian's ``chromium``) through Playwright, as an annotator uses it.

    Label Studio's player is an ``<audio>`` element it adds to the page for the task's
    file; the test follows THAT element (by its source), not the page's first one, and
    presses the player's own play button (``data-testid``) once the player says it is
    ready. A failure names what every audio element and the console said.
    """
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium: apt-get install chromium")
    creds = review_server.credentials(reviewed.home / "labelstudio")
    task = _pushed_tasks(reviewed)[0]
    clip_file = task["data"]["clip_id"] + ".flac"
    mine = (  # the task's own <audio> elements
        f"Array.from(document.querySelectorAll('audio')).filter(a => a.src.includes({clip_file!r}))"
    )
    url = reviewed.server.url
    console: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            audio: list[int] = []
            page.on("response", lambda r: "local-files" in r.url and audio.append(r.status))
            page.on("console", lambda m: m.type in ("error", "warning") and console.append(m.text))
            page.goto(f"{url}/user/login/")
            page.fill("input[name=email]", creds.username)
            page.fill("input[name=password]", creds.password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{url}/projects/{task['project']}/data?task={task['id']}")
            page.wait_for_function(f"{mine}.some(a => a.readyState >= 2)", timeout=60_000)
            play = page.locator("[data-testid='playback-button:play']")
            sync_api.expect(play).to_be_enabled(timeout=30_000)
            sync_api.expect(play).to_have_attribute("data-waiting", "false", timeout=30_000)
            text = page.inner_text("body")
            assert "Who speaks in the highlighted clip?" in text
            assert task["data"]["predicted_speaker"] in text and "a new person" in text
            played = _press_play(page, play, mine)
            assert played, (
                f"the task's audio did not play; audio elements: {page.evaluate(_AUDIO_STATE)}; "
                f"console: {console[-10:]}"
            )
            assert set(audio) <= {200, 206} and audio
        finally:
            browser.close()


def _press_play(page: Any, play: Any, mine: str, attempts: int = 2) -> bool:
    """Press play until the task's audio has played 0.3 s; False when it never does.

    "Played" is the element's own record of what it played (``played``), so a clip
    that played to its end and went back to 0 (slow polling on a loaded machine) still
    counts. A second press (as a person would give) only when the first left the audio
    paused and the player shows its play button again, as after a press that lands
    while the player is still setting up.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    played = (
        f"{mine}.some(a => a.currentTime > 0.3 || "
        "Array.from({length: a.played.length}, (_, i) => a.played.end(i)).some(t => t > 0.3))"
    )
    for _ in range(attempts):
        if page.evaluate(f"{mine}.every(a => a.paused)") and play.is_visible():
            play.click(timeout=30_000)
        try:
            page.wait_for_function(played, timeout=30_000)
            return True
        except PlaywrightTimeout:
            continue
    return bool(page.evaluate(played))


def _submit(
    server: Server,
    task: dict[str, Any],
    decision: str | None = "accept",
    speaker: str | None = None,
    text: str | None = None,
    same_as: str | None = None,
    flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """What the labeling page POSTs: the preloaded prediction, edited, plus the answers."""
    prediction = task["predictions"][0]
    result = []
    for item in prediction["result"]:
        item = {**item, "origin": "prediction"}
        if item["from_name"] == "speaker" and speaker is not None:
            item = {**item, "value": {"choices": [speaker]}, "origin": "prediction-changed"}
        if item["from_name"] == "transcript" and text is not None:
            item = {**item, "value": {"text": [text]}, "origin": "prediction-changed"}
        result.append(item)
    for name, values in (
        ("same_as", [same_as] if same_as else []),
        ("quality", list(flags)),
        ("decision", [decision] if decision else []),
    ):
        if values:
            item = {"id": f"{name}-1", "from_name": name, "to_name": "audio", "type": "choices"}
            result.append({**item, "value": {"choices": values}, "origin": "manual"})
    annotation = _sdk(server).annotations.create(
        id=task["id"],
        result=result,
        lead_time=7.5,
        parent_prediction=prediction["id"],
        project=task["project"],
    )
    return dict(annotation.dict())


def _human(store: Store) -> dict[str, dict[str, Any]]:
    columns = [
        "clip_id",
        "speaker_id",
        "text",
        "status",
        "speaker_label_source",
        "transcript_label_source",
        "labelled_by",
        "labelled_at",
    ]
    rows = store.materialized_clips().select(columns).to_pylist()
    return {r["clip_id"]: r for r in rows if r["labelled_by"]}


def test_annotations_come_back_as_human_labels_once(reviewed: Reviewed) -> None:
    from convoice.flows.review import review_pull_flow

    store, server = reviewed.store, reviewed.server
    tasks = _pushed_tasks(reviewed)
    speakers = {s.speaker_id: s for s in store.speakers()}
    ids = sorted(speakers)
    by_role = dict(
        zip(["reassign", "reject", "merge", "new", "bad", "confirm", "cancel"], tasks, strict=False)
    )
    predicted = {k: t["data"]["predicted_speaker"] for k, t in by_role.items()}
    other = next(s for s in ids if s != predicted["reassign"])
    partner = next(s for s in ids if s != predicted["merge"])
    made = {
        "reassign": _submit(server, by_role["reassign"], speaker=other, text="Corrected words."),
        "reject": _submit(server, by_role["reject"], decision="reject", flags=("bad_audio",)),
        "merge": _submit(server, by_role["merge"], same_as=partner),
        "new": _submit(server, by_role["new"], speaker=NEW_SPEAKER),
        "bad": _submit(server, by_role["bad"], speaker="spk_nobody"),
        "confirm": _submit(server, by_role["confirm"], flags=("overlap",)),
    }
    _sdk(server).annotations.create(id=by_role["cancel"]["id"], result=[], was_cancelled=True)

    report = review_pull_flow(home=str(reviewed.home))
    assert (report.tasks_read, report.annotations_read, report.annotations_applied) == (7, 7, 5)
    skipped = {task_id: reason for task_id, _, reason in report.skipped}
    assert (
        "spk_nobody" in skipped[by_role["bad"]["id"]]
        and "not in the registry" in skipped[by_role["bad"]["id"]]
    )
    assert skipped[by_role["cancel"]["id"]] == "skipped by the annotator"
    assert len(report.merges) == 1 and set(report.merges[0]) == {predicted["merge"], partner}
    merged, kept = report.merges[0]
    clip = {k: t["data"]["clip_id"] for k, t in by_role.items()}
    assert report.new_speakers == [new_speaker_id(clip["new"])]

    human = _human(store)
    who = made["reassign"]["completed_by"]
    email = who["email"] if isinstance(who, dict) else "admin@convoice.local"
    row = human[clip["reassign"]]
    assert row["speaker_id"] == (kept if other == merged else other)
    assert (row["text"], row["status"]) == ("Corrected words.", "accepted")
    assert row["speaker_label_source"] == row["transcript_label_source"] == LabelSource.HUMAN
    assert row["labelled_by"] == email
    labels = store.labels().to_pylist()
    key = (clip["reassign"], "text")
    text_label = next(r for r in labels if (r["clip_id"], r["field"]) == key)
    assert text_label["labelled_at"] == utc_iso(str(made["reassign"]["updated_at"]))
    assert text_label["task_id"] == str(by_role["reassign"]["id"])
    assert human[clip["reject"]]["status"] == "rejected"
    assert human[clip["merge"]]["speaker_id"] == kept
    assert human[clip["confirm"]]["status"] == "accepted"
    unapplied = {str(by_role["bad"]["id"]), str(by_role["cancel"]["id"])}
    assert not [r for r in labels if r["task_id"] in unapplied]  # (a merge may relabel them)
    new_id = human[clip["new"]]["speaker_id"]
    registry = {s.speaker_id: s for s in store.speakers()}
    assert merged not in registry and new_id in registry
    assert registry[new_id].label_source == LabelSource.HUMAN and registry[new_id].n_clips == 1
    contributions = review_store.contributions(store)  # registry = machine + merge + review
    for role in ("reassign", "merge", "new", "confirm"):  # accepted: counted for their speaker
        if clip[role] in contributions:
            assert contributions[clip[role]].plus == human[clip[role]]["speaker_id"]
    assert contributions[clip["new"]].plus == new_id
    from convoice.records import identity_vector

    embeddings = {  # the registry sums the identity embedding (CAM++, 192-d)
        r["clip_id"]: np.asarray(identity_vector(r), dtype=np.float32)
        for r in store.clips().select(["clip_id", "embedding", "speaker_embedding"]).to_pylist()
    }
    dim = len(next(iter(embeddings.values())))
    expected = {k: (s.vector_sum.copy(), s.n_clips) for k, s in speakers.items() if k != merged}
    expected[kept] = (
        expected[kept][0] + speakers[merged].vector_sum,
        speakers[kept].n_clips + speakers[merged].n_clips,
    )
    for c in contributions.values():
        for speaker_id, sign in ((c.plus, 1), (c.minus, -1)):
            if speaker_id:
                vector, n = expected.get(speaker_id, (np.zeros(dim, np.float32), 0))
                expected[speaker_id] = (vector + sign * embeddings[c.clip_id], n + sign)
    assert set(registry) == set(expected)
    for speaker_id, (vector, n) in expected.items():
        assert registry[speaker_id].n_clips == n, speaker_id
        np.testing.assert_allclose(registry[speaker_id].vector_sum, vector, atol=1e-4)
    assert merged not in set(store.materialized_clips()["speaker_id"].to_pylist())
    assert [(m.merged, m.kept) for m in review_store.merges(store)] == [(merged, kept)]
    log = {r["clip_id"]: r for r in review_store.review_log(store).to_pylist()}
    assert log[clip["reject"]]["flags"] == ["bad_audio"] and log[clip["confirm"]]["flags"] == [
        "overlap"
    ]
    labels = store.labels().to_pylist()
    assert all(r["task_id"] and r["labelled_by"] == email for r in labels)

    versions = store.table_versions()
    extra = {n: store.tables.version(n) for n in review_store_tables()}
    again = review_pull_flow(home=str(reviewed.home))
    assert (again.annotations_applied, again.already_applied, again.labels_applied) == (0, 5, 0)
    assert store.table_versions() == versions  # pulling again writes nothing at all
    assert {n: store.tables.version(n) for n in review_store_tables()} == extra
    assert _human(store) == human

    release = store.release(tag="reviewed")
    released = pq.read_table(Path(release.path) / "clips.parquet").to_pylist()
    heldout = {r["clip_id"] for r in released if r["split"] == "heldout"}
    assert heldout == set(human) == set(review_store.heldout_clips(store)["clip_id"].to_pylist())
    reviewed.state.update(human=human, made=made, roles=by_role, merged=merged, kept=kept)


def review_store_tables() -> tuple[str, ...]:
    from convoice.storage.tables import REVIEW_TABLES

    return REVIEW_TABLES


def test_an_edited_annotation_is_applied_again(reviewed: Reviewed) -> None:
    from convoice.flows.review import review_pull_flow

    made = reviewed.state["made"]["confirm"]
    result = [
        {**r, "value": {"text": ["Edited later."]}} if r["from_name"] == "transcript" else r
        for r in made["result"]
    ]
    time.sleep(1.1)  # a later time than the first submission
    _sdk(reviewed.server).annotations.update(id=made["id"], result=result)
    report = review_pull_flow(home=str(reviewed.home))
    assert (report.annotations_applied, report.already_applied) == (1, 4)
    clip_id = reviewed.state["roles"]["confirm"]["data"]["clip_id"]
    assert _human(reviewed.store)[clip_id]["text"] == "Edited later."
    assert review_pull_flow(home=str(reviewed.home)).labels_applied == 0
    reviewed.state["human"] = _human(reviewed.store)


def test_a_pull_while_label_studio_is_down_changes_nothing(
    reviewed: Reviewed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convoice.flows.review import ReviewIncomplete, review_pull_flow

    store = reviewed.store
    versions = store.table_versions()
    monkeypatch.setenv("CONVOICE_REVIEW__PORT", str(free_port()))
    monkeypatch.setenv("CONVOICE_REVIEW__RETRIES", "0")
    with pytest.raises(ReviewIncomplete) as err:
        review_pull_flow(home=str(reviewed.home))
    assert "could not find project" in err.value.report.error
    assert store.table_versions() == versions


def _labelled_fields(store: Store) -> dict[tuple[str, str], Any]:
    """Every (clip, field) a person labelled, with its materialised value."""
    rows = {r["clip_id"]: r for r in store.materialized_clips().to_pylist()}
    labelled = {(r["clip_id"], r["field"]) for r in store.labels().to_pylist()}
    return {(clip_id, name): rows[clip_id][name] for clip_id, name in labelled}


def test_machine_runs_never_replace_human_labels(reviewed: Reviewed) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from convoice.flows.ingest import ingest_flow
    from convoice.review.decisions import latest_values
    from convoice.storage.tables import sql_string

    store = reviewed.store
    before = _labelled_fields(store)
    latest = latest_values(label_records(store.labels()))
    assert before == {key: label.value for key, label in latest.items()}
    clips = store.clips()  # a "retrain": the machine rewrites every recording's rows
    for recording_id in set(clips["recording_id"].to_pylist()):
        rows = clips.filter(pc.equal(clips["recording_id"], recording_id))
        machine = (("speaker_id", "spk_machine"), ("text", "machine"), ("status", "review"))
        for name, value in machine:
            index = rows.schema.get_field_index(name)
            rows = rows.set_column(index, name, pa.array([value] * rows.num_rows))
        store.tables.replace_where("clips", rows, f"recording_id = {sql_string(recording_id)}")
    assert _labelled_fields(store) == before

    sources = _sources(reviewed.corpus, reviewed.base_url, reviewed.home / "third.csv", range(2, 3))
    report = ingest_flow(
        sources_file=str(sources), home=str(reviewed.home), config=str(reviewed.config)
    )
    assert len(report.recordings) == 1
    assert _labelled_fields(store) == before
    new_clips = store.clips().filter(
        pc.equal(store.clips()["recording_id"], report.recordings[0].recording_id)
    )
    assert new_clips.num_rows and reviewed.state["merged"] not in set(
        new_clips["speaker_id"].to_pylist()
    )


def test_label_studio_reports_annotations_to_the_webhook_receiver(reviewed: Reviewed) -> None:
    from convoice.config import load_settings
    from convoice.review.client import client_for
    from convoice.review.webhook import WebhookReceiver

    client = client_for(load_settings(home=str(reviewed.home)), reviewed.store)
    project_id = client.find_project(TITLE)
    assert project_id is not None
    with WebhookReceiver() as receiver:
        client.ensure_webhook(project_id, receiver.url)
        client.ensure_webhook(project_id, receiver.url)  # registered once
        _submit(reviewed.server, _pushed_tasks(reviewed)[7])
        assert receiver.wait(60) and receiver.received >= 1
    hooks = _sdk(reviewed.server).webhooks.list(project=str(project_id))
    assert [h.url for h in hooks].count(receiver.url) == 1


# -- reference clips: people decide by ear -----------------------------------


def _clip_row(clip_id: str, speaker: str, duration: float, confidence: float, status: str) -> dict:
    return {
        "clip_id": clip_id, "recording_id": "r", "speaker_id": speaker, "duration": duration,
        "speaker_confidence": confidence, "status": status, "audio_uri": f"audio/clips/r/{clip_id}",
    }  # fmt: skip


def test_a_speaker_is_heard_by_its_most_confident_accepted_clip_of_2_to_6_s() -> None:
    from convoice.review.layout import reference_clips

    rows = [
        _clip_row("a_short", "spk_a", 1.5, 1.0, "accepted"),  # too short
        _clip_row("a_review", "spk_a", 4.0, 1.0, "review"),  # not accepted
        _clip_row("a_ok", "spk_a", 3.0, 0.9, "accepted"),
        _clip_row("a_best", "spk_a", 5.0, 0.97, "accepted"),
        _clip_row("a_long", "spk_a", 7.5, 1.0, "accepted"),  # longer than 6 s: only a fallback
        _clip_row("b_long", "spk_b", 7.5, 0.8, "accepted"),
        _clip_row("c_review", "spk_c", 3.0, 0.9, "review"),
    ]
    refs = reference_clips([StoredClip.from_row(r) for r in rows])
    assert {s: r.clip_id for s, r in refs.items()} == {"spk_a": "a_best", "spk_b": "b_long"}
    assert refs["spk_a"].duration == 5.0 and refs["spk_b"].duration == 6.0  # cut to 6 s


def test_candidates_carry_a_reference_clip_that_label_studio_serves(reviewed: Reviewed) -> None:
    import httpx

    from convoice.config import load_settings
    from convoice.review import client as review
    from convoice.review.audio import connect_audio
    from convoice.review.build import build_tasks
    from convoice.review.layout import label_config, reference_clips

    store = reviewed.store
    rows = clip_records(store.materialized_clips())
    registered = {s.speaker_id for s in store.speakers()}  # the candidates a task offers
    usable = [r for r in rows if r.duration >= 2.0 and r.speaker_id in registered]
    speakers = sorted({r.speaker_id for r in usable})
    assert len(speakers) >= 2
    sure = {next(r.clip_id for r in usable if r.speaker_id == s) for s in speakers}
    # as if the machine had accepted one clip of each speaker (the fixture routes all to review)
    refs = reference_clips(
        [replace(r, status=ClipStatus.ACCEPTED) if r.clip_id in sure else r for r in rows]
    )
    heard = set(refs) & registered  # (earlier tests' people may have accepted other clips)
    assert set(speakers) <= heard
    settings = load_settings(str(reviewed.config), home=str(reviewed.home))
    client = review.client_for(settings, store)
    project = client.ensure_project(f"{TITLE} (references)", label_config())  # LS accepts it
    recordings = {r.recording_id: r for r in recording_records(store.recordings())}
    todo = [r for r in rows if r.clip_id not in sure][:2]
    tasks = build_tasks(store, todo, recordings, settings.review.context_s, False, refs)
    connect_audio(client, project, settings, store)
    review.import_batch(client, project, tasks)
    stored = [t.dict() for t in _sdk(reviewed.server).tasks.list(project=project, fields="all")]
    assert len(stored) == len(todo)
    auth = {"Authorization": f"Token {reviewed.server.token}"}
    for task in stored:
        references = task["data"]["references"]
        choices = {c["value"] for c in task["data"]["speaker_choices"]}
        assert {r["speaker_id"] for r in references} == heard <= choices
        for ref in references:
            assert ref["speaker_id"] in ref["label"] and "hear a clip" in ref["label"]
            answer = httpx.get(reviewed.server.url + ref["audio"], headers=auth)
            assert answer.status_code == 200, ref["audio"]
            path = reviewed.home / "reference.flac"
            path.write_bytes(answer.content)
            assert 2.0 <= soundfile.info(path).duration <= 6.01
            assert refs[ref["speaker_id"]].clip_id in ref["audio"]


def test_two_pushes_at_once_make_one_project_with_each_clip_once(reviewed: Reviewed) -> None:
    import threading

    from convoice.flows.review import review_push_flow

    title = f"{TITLE} two pushes"
    reports: list[Any] = []
    with environment({"CONVOICE_REVIEW__PROJECT_TITLE": title}):
        runs = [
            threading.Thread(
                target=lambda: reports.append(review_push_flow(home=str(reviewed.home)))
            )
            for _ in range(2)
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=600)
    assert len(reports) == 2
    sdk = _sdk(reviewed.server)
    projects = [p for p in sdk.projects.list() if p.title == title]
    assert len(projects) == 1, f"{len(projects)} projects named {title!r}"
    tasks = [t.dict() for t in sdk.tasks.list(project=projects[0].id, fields="all", page_size=500)]
    clip_ids = [t["data"]["clip_id"] for t in tasks]
    assert len(clip_ids) == len(set(clip_ids)), "a clip's task made twice"
    # the one that came first pushed the store's whole queue as it is now (the tests before
    # this one labelled some of it), the other found it there
    first = max(reports, key=lambda r: r.pushed)
    assert sorted(r.pushed for r in reports) == [0, len(clip_ids)] == [0, first.needing_review]


def test_a_push_of_the_speaker_queue_sends_the_doubtful_speakers_least_sure_first(
    reviewed: Reviewed,
) -> None:
    """`convoice review push --queue speaker`, as an operator types it, into a project of
    its own: the clips whose speaker label needs a person, least sure speaker first; a
    wrong queue name is a message and exit code 2 before anything is sent."""
    import sys

    title = f"{TITLE} speaker queue"
    env = {"CONVOICE_REVIEW__PROJECT_TITLE": title, "CONVOICE_HOME": str(reviewed.home)}
    command = [sys.executable, "-c", "from convoice.cli import main; main()", "review", "push"]
    with environment(env):
        status = subprocess.run(
            [*command[:-1], "status"], capture_output=True, text=True, timeout=300
        )
        wrong = subprocess.run(
            [*command, "--queue", "speakers"], capture_output=True, text=True, timeout=300
        )
        done = subprocess.run(
            [*command, "--queue", "speaker"], capture_output=True, text=True, timeout=600
        )
    assert wrong.returncode == 2, wrong.stderr
    assert "review queue 'speakers': must be one of clip, speaker, transcript" in " ".join(
        wrong.stdout.split()
    )
    assert "Traceback" not in wrong.stdout + wrong.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "least sure speaker label first" in done.stdout
    rows = clip_records(reviewed.store.materialized_clips())
    expected = [r.clip_id for r in review_queue(rows, kind=QueueKind.SPEAKER)]
    assert expected, "the test store has no speaker label in review"
    assert len(expected) < len(review_queue(rows))  # some clips have only a doubtful transcript
    sdk = _sdk(reviewed.server)
    project = next(p for p in sdk.projects.list() if p.title == title)
    tasks = sorted(
        (t.dict() for t in sdk.tasks.list(project=project.id, fields="all", page_size=500)),
        key=lambda t: t["id"],
    )
    assert [t["data"]["clip_id"] for t in tasks] == expected
    assert status.returncode == 0, status.stdout + status.stderr
    rows_printed = [line.split() for line in status.stdout.splitlines()]
    table = {r[0]: r[1:] for r in rows_printed if len(r) == 5 and r[0] in set(QueueKind)}
    assert table["speaker"][0] == str(len(expected)), status.stdout
    assert table["clip"][0] == str(len(review_queue(rows)))
    confidences = [t["data"]["speaker_confidence"] for t in tasks]
    assert confidences == sorted(confidences)
    before = " ".join(status.stdout.split())
    assert f"project {title!r}: not there yet (`convoice review push` makes it)" in before

    # an annotator answers the first task and skips the second: status counts both, pulls none
    _submit(reviewed.server, tasks[0])
    _sdk(reviewed.server).annotations.create(id=tasks[1]["id"], result=[], was_cancelled=True)
    with environment(env):
        after = subprocess.run(
            [*command[:-1], "status"], capture_output=True, text=True, timeout=300
        )
    assert after.returncode == 0, after.stdout + after.stderr
    assert (
        f"project {title!r} (id {project.id}): {len(tasks)} tasks, 2 annotated (2 annotations, "
        "0 pulled, 1 skipped by the annotator); 1 not pulled yet: run `convoice review pull`"
    ) in " ".join(after.stdout.split())


def test_review_status_says_when_label_studio_cannot_be_reached(tmp_path: Path) -> None:
    """`convoice review status` on a store whose Label Studio is down: the queues, then one
    line saying why the server's side is missing, exit 0 and no traceback."""
    import sys

    env = {
        **os.environ,
        "CONVOICE_HOME": str(tmp_path / "home"),
        "CONVOICE_REVIEW__URL": "http://127.0.0.1:9",  # the discard port: nothing listens
        "CONVOICE_REVIEW__TOKEN": "not-a-token",
    }
    command = [sys.executable, "-c", "from convoice.cli import main; main()", "review", "status"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "0 clips in" in out
    assert "Label Studio: Label Studio at http://127.0.0.1:9 could not" in out
    assert "(the queues above are the store's alone)" in out
    assert "Traceback" not in done.stdout + done.stderr
