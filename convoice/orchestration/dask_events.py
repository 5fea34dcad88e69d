"""The stage events Dask workers publish, forwarded to the flow's progress display."""

from __future__ import annotations

from typing import Any

from convoice import logs


def watch_dask(task_runner: Any, progress: logs.Progress) -> None:
    """Forward the stage events Dask workers publish to ``progress``."""
    client = getattr(task_runner, "client", None)
    if client is None or not hasattr(client, "subscribe_topic"):
        return

    def handler(event: tuple[float, dict[str, str]]) -> None:
        msg = event[1]
        progress.event(msg["recording_id"], msg["stage"], msg["what"])

    client.subscribe_topic(logs.DASK_TOPIC, handler)
