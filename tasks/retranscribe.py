"""Round two as a task: the clips of one recording transcribed again, the better rows written.

A recording's candidate clips (:func:`convoice.storage.round_two.clip_samples`)
are transcribed in the language each clip already has, with the channel's
vocabulary; the revised machine rows are upserted in one commit per recording
(:func:`convoice.storage.round_two.write_revisions`), so a killed run resumes
where it was (an attempt is recorded on the clip, and the same attempt is not
made twice).
"""

from __future__ import annotations

import dataclasses

from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice.config import Settings
from convoice.engines import loaders
from convoice.engines.round_two import rare_word, whisper
from convoice.models import asr
from convoice.models.from_settings import asr_options, with_vocabulary
from convoice.models.language import LanguageGuess
from convoice.models.post_correction import PostCorrection, fixer
from convoice.models.round_two import (
    Fixer,
    Revision,
    as_round_two,
    attempt_key,
    attempt_way,
    revise,
)
from convoice.orchestration.store_lock import machine_lock
from convoice.records import StoredClip, Transcript
from convoice.storage import Store
from convoice.storage import calibration as stored_calibration
from convoice.storage.round_two import clip_samples, write_revisions


def _fixer(settings: Settings, model: str, taught: list[str]) -> Fixer | None:
    cfg = settings.asr
    return fixer(
        taught,
        rare_word(model or cfg.model),
        PostCorrection(cfg.post_correction_distance, cfg.post_correction_margin),
    )


def ingest_round_two(
    transcripts: list[Transcript | None], settings: Settings, words: list[str], taught: list[str]
) -> list[Transcript | None]:
    """An ingest's transcripts made with the channel's ``words``, as round two leaves them:
    post-corrected towards ``taught``, each recording the attempt it is (module docs).
    """
    cfg = settings.asr
    name = loaders.whisper_name(cfg.model)  # round two's Whisper with no --model
    way = attempt_way(
        cfg.vocabulary_mode,
        cfg.round_two_beam_size,
        cfg.post_correction_distance,
        cfg.post_correction_margin,
    )
    key = attempt_key(name, way, words)
    return as_round_two(transcripts, key, name, _fixer(settings, "", taught))


@task(name="retranscribe-recording", cache_policy=NO_CACHE)
def retranscribe_recording(
    store: Store,
    rows: list[StoredClip],
    settings: Settings,
    model: str,
    words: list[str],
    key: str,
    taught: list[str] | None = None,
) -> list[Revision]:
    """Transcribe ``rows`` (clips of one recording) again with ``words``; write what is better.

    ``taught``: the words people taught the channel, which the machine text kept is
    post-corrected towards (``[asr] post_correction_distance``).
    """
    name, found = whisper(settings, model)
    samples, regions = clip_samples(store, rows)
    guesses = [
        LanguageGuess(r.language or "en", float(r.language_probability or 1.0), "kept")
        for r in rows
    ]
    options = dataclasses.replace(
        with_vocabulary(asr_options(settings), words, settings.asr.vocabulary_mode),
        beam_size=settings.asr.round_two_beam_size,
    )
    new: list[Transcript | None] = asr.transcribe_clips(
        found, samples, regions, options, lambda _: (name, found), languages=guesses
    )
    fix = _fixer(settings, model, taught or [])
    cal = stored_calibration.current(store.location, settings.encoder.campplus or None)
    revisions = [
        revise(r, t, key, settings.routing, words, fix, cal) for r, t in zip(rows, new, strict=True)
    ]
    with machine_lock(store.root):  # an ingest's commit does not write the clips meanwhile
        write_revisions(store, rows[0].recording_id, revisions)
    return revisions
