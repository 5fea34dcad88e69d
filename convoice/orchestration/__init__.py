"""Prefect plumbing that is not a task: the task runner, the store's concurrency
limit, downloads started ahead, model preloading and Dask's stage events."""
