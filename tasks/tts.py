"""The TTS steps as Prefect tasks: export a release, train, evaluate (:mod:`convoice.flows.tts`).

The work is :mod:`convoice.training.tts_export`, :mod:`convoice.training.tts` and
:mod:`convoice.training.tts_runs`.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice.training import tts as tts_train
from convoice.training import tts_eval, tts_export, tts_runs

export_task = task(name="export-tts", cache_policy=NO_CACHE)(tts_export.export_release)
train_task = task(name="train-tts", cache_policy=NO_CACHE)(tts_train.train)
evaluate_task = task(name="evaluate-tts", cache_policy=NO_CACHE)(tts_eval.evaluate)


run_export_task = task(name="export-tts-for-run", cache_policy=NO_CACHE)(tts_runs.run_export)
