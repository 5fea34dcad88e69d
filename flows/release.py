"""The release flow: publish the store's current labels as the next dataset version.

Meant for a schedule (``deployments/prefect.yaml``): when no table changed
since the latest release, it logs why and publishes nothing, so a quiet week
does not produce a copy of last week's version. While it writes, it holds the
``convoice-store`` global concurrency limit (``convoice deploy`` creates it
with one slot); a missing limit only warns.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from convoice.config import load_settings
from convoice.models.licence import LOCAL_ATTRIBUTION_HINT, local_attributions
from convoice.orchestration.store_lock import store_lock
from convoice.storage import Release, Store


def unchanged_since(release: Release, versions: dict[str, int | None]) -> bool:
    """Whether every table is still at the version ``release`` was made from."""
    return dict(release.table_versions) == dict(versions)


def _markdown(release: Release) -> str:
    by_status = ", ".join(f"{k}: {v}" for k, v in sorted(release.clips_by_status.items()))
    return (
        f"# Dataset {release.name}{f' ({release.tag})' if release.tag else ''}\n\n"
        f"| clips | recordings | speakers | hours | by status |\n|---|---|---|---|---|\n"
        f"| {release.n_clips} | {release.n_recordings} | {release.n_speakers} "
        f"| {release.hours:.3f} | {by_status} |\n\n"
        f"Path: `{release.path}`. Pull it: `convoice dataset pull {release.name} --to DIR`.\n"
    )


@flow(name="convoice-release", log_prints=True)
def release_flow(tag: str | None = None, note: str = "", home: str | None = None) -> Release | None:
    """Release the current labels as ``v<N>`` (named ``tag``); None when nothing changed.

    ``home`` is the store root (default: ``$CONVOICE_HOME`` or ``~/.convoice``).
    """
    logger = get_run_logger()
    settings = load_settings(home=home)
    store = Store.open(settings)
    with store_lock(store_root=store.root):
        releases = store.releases()
        latest = releases[-1] if releases else None
        versions = store.table_versions()
        if versions["clips"] is None:
            logger.info("no release: the store %s has no clips yet", store.root)
            return None
        if latest is not None and unchanged_since(latest, versions):
            logger.info(
                "no release: nothing changed since %s (table versions %s)", latest.name, versions
            )
            return None
        release = store.release(tag=tag or None, note=note)
    logger.info(
        "released %s: %d clips, %d speakers, %.3f h, by status %s, in %s; since the last: %s",
        release.name,
        release.n_clips,
        release.n_speakers,
        release.hours,
        release.clips_by_status,
        release.path,
        {k: v for k, v in release.changes.items() if k != "text_changed_clips"},
    )
    local = local_attributions(store.recordings().column("attribution").to_pylist())
    if local:
        logger.warning("%d recording(s) %s", local, LOCAL_ATTRIBUTION_HINT)
    create_markdown_artifact(_markdown(release), key="release", description="Dataset release")
    return release
