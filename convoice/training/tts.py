"""Fine-tune a multi-speaker VITS on d-vectors with coqui-tts, resume it, synthesize, score it.

The model is coqui-tts's VITS (``TTS.tts.models.vits.Vits``) conditioned on the
clips' resemblyzer embeddings (``use_d_vector_file=True``, ``d_vector_dim=256``),
trained with coqui's ``Trainer`` (its optimizers, GAN steps, checkpoints and
TensorBoard logger). With ``[tts] checkpoint`` and ``config`` it starts from the
operator's pretrained model (``restore_path``: matching layers are loaded,
the speaker conditioning is new when the checkpoint had none); without them it
trains :func:`tiny_args`, a configuration small enough to take a few steps on a
CPU, which proves the path and produces noise.

Steps are counted exactly: the trainer's epoch loop is replaced by a loop over
its own ``train_step`` that stops after ``steps`` steps in total. Every
``checkpoint_every`` steps, and at the end, the trainer writes
``checkpoint_<steps done>.pth`` into its folder under the tracked run
(``<run>/coqui/<trainer run>/``); a run started again with the same run id
continues from the newest one (coqui's ``continue_path``), with its optimizer
state and step counter. Each step's losses go to the tracked run.

Evaluation follows zero-shot TTS papers: each heldout clip's text is
synthesized from its speaker's mean training embedding; speaker similarity is
the resemblyzer cosine between the synthesized audio and that embedding, and
intelligibility the word error rate of the engine's Whisper against the text.
The same two numbers on the real heldout clips are the ceiling.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.engines import loaders
from convoice.models import tts_data
from convoice.models.asr import AsrOptions, transcribe_clips
from convoice.models.embed import SAMPLE_RATE as ENCODER_RATE
from convoice.models.embed import embed_regions
from convoice.models.metrics import WerCount, wer_count
from convoice.records import Region
from convoice.training.tts_export import read_export, resample

if TYPE_CHECKING:
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits

    from convoice.config import Settings, TtsSettings
    from convoice.training.tracking import TrainingRun

log = logging.getLogger(__name__)

TRAINER_DIR = "coqui"  # the trainer's folders, under the tracked run
RUN_NAME = "convoice-vits"
MAX_INFERENCE_FRAMES = 1000  # about 11.6 s at 22050 Hz: an untrained model's durations are wild
KEEP = 2  # complete checkpoints kept per run (older ones are deleted)
_CHECKPOINT = re.compile(r"checkpoint_(\d+)\.pth$")


class TtsTrainingError(RuntimeError):
    """Training cannot start or continue; the message says why."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did."""

    run_id: str
    trainer_dir: Path  # coqui's run folder: config.json, checkpoints, TensorBoard events
    checkpoint: Path  # the newest checkpoint
    start_step: int  # steps done before this call (0 unless resumed)
    steps_done: int
    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # name -> (step, v)
    seconds: float = 0.0

    @property
    def resumed(self) -> bool:
        return self.start_step > 0

    def last_losses(self) -> dict[str, float]:
        return {name: values[-1][1] for name, values in self.losses.items() if values}


def tiny_args(d_vector_file: Path) -> dict[str, Any]:
    """VitsArgs of a tiny VITS (about 1 M generator parameters) conditioned on d-vectors."""
    return {
        "hidden_channels": 32,
        "hidden_channels_ffn_text_encoder": 64,
        "num_heads_text_encoder": 2,
        "num_layers_text_encoder": 1,
        "num_layers_posterior_encoder": 2,
        "num_layers_flow": 1,
        "use_sdp": False,
        "spec_segment_size": 8,
        "upsample_initial_channel_decoder": 32,
        "upsample_rates_decoder": [8, 8, 4],  # product = hop length 256
        "upsample_kernel_sizes_decoder": [16, 16, 8],
        "resblock_kernel_sizes_decoder": [3],
        "resblock_dilation_sizes_decoder": [[1, 3, 5]],
        "periods_multi_period_discriminator": [],  # the scale discriminator only
        "use_d_vector_file": True,
        "d_vector_dim": tts_data.EMBEDDING_DIM,
        "d_vector_file": [str(d_vector_file)],
        "max_inference_len": MAX_INFERENCE_FRAMES,
    }


def build_config(tts: TtsSettings, data: Path, output: Path) -> VitsConfig:
    """The VITS config for training on the ``coqui``-format export in ``data``.

    From ``tts.config`` when the operator set one (its audio, characters and
    model size must match ``tts.checkpoint``), else the tiny configuration.
    Either way: our dataset, d-vector conditioning, CPU-friendly loading, no
    trainer-side evaluation (heldout clips are evaluated by synthesis), and
    checkpoints written by :func:`train` only.
    """
    from TTS.config.shared_configs import BaseAudioConfig, BaseDatasetConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import VitsArgs

    d_vectors = data / "d_vectors.json"
    if tts.config:
        config = VitsConfig()
        config.load_json(tts.config)
        config.model_args.use_speaker_embedding = False
        config.model_args.use_d_vector_file = True
        config.model_args.d_vector_dim = tts_data.EMBEDDING_DIM
        config.model_args.d_vector_file = [str(d_vectors)]
        if int(config.audio.sample_rate) != tts.sample_rate:
            raise TtsTrainingError(
                f"[tts] config {tts.config} is for {config.audio.sample_rate} Hz but the export is"
                f" {tts.sample_rate} Hz: set [tts] sample_rate = {config.audio.sample_rate}"
            )
    else:
        config = VitsConfig(
            model_args=VitsArgs(**tiny_args(d_vectors)),
            audio=BaseAudioConfig(
                sample_rate=tts.sample_rate,
                fft_size=1024,
                win_length=1024,
                hop_length=256,
                num_mels=80,
                mel_fmin=0.0,
                mel_fmax=None,
            ),
            use_phonemes=False,
            text_cleaner=tts.text_cleaner,
        )
    config.run_name = RUN_NAME
    config.output_path = str(output)
    config.datasets = [
        BaseDatasetConfig(
            formatter="coqui",
            dataset_name=tts_data.DATASET_NAME,
            path=str(data),
            meta_file_train="metadata.csv",
            language="en",
        )
    ]
    config.batch_size = tts.batch_size
    config.eval_batch_size = tts.batch_size
    config.num_loader_workers = 0
    config.num_eval_loader_workers = 0
    config.run_eval = False
    config.test_delay_epochs = 10**9  # no test sentences during training
    config.test_sentences = []
    config.epochs = 10**9  # :func:`train` stops after the steps asked for
    config.print_step = 10  # the console; every step goes to TensorBoard (plot_step)
    config.plot_step = 1
    config.save_step = 10**9  # :func:`train` writes the checkpoints
    config.save_n_checkpoints = 10**9  # :func:`train` prunes, only complete ones (KEEP)
    config.save_best_after = 10**9
    config.save_on_interrupt = False
    config.mixed_precision = False
    config.min_audio_len = 1
    config.max_audio_len = tts.sample_rate * 30
    config.dashboard_logger = "tensorboard"
    return config


def check_settings(tts: TtsSettings) -> None:
    """TtsTrainingError when the ``[tts]`` settings cannot start a training run."""
    if tts.checkpoint and not tts.config:
        raise TtsTrainingError("[tts] checkpoint needs its [tts] config (the model's config.json)")
    for name, path in (("checkpoint", tts.checkpoint), ("config", tts.config)):
        if path and not Path(path).is_file():
            raise TtsTrainingError(f"[tts] {name} {path} is not a file")
    if tts.steps < 1 or tts.checkpoint_every < 1 or tts.batch_size < 1:
        raise TtsTrainingError("[tts] steps, checkpoint_every and batch_size must be at least 1")
    if tts.sample_rate < 8000:
        raise TtsTrainingError(f"[tts] sample_rate {tts.sample_rate} is below 8000 Hz")


def latest_checkpoint(root: Path) -> tuple[Path, int] | None:
    """The newest complete ``checkpoint_<n>.pth`` under ``root``'s trainer folders, with ``n``.

    Complete means its ``.saved`` marker was written after it: a run killed while
    writing a checkpoint leaves a file without one, which does not count.
    """
    found = [
        (int(match.group(1)), path)
        for path in root.glob(f"{TRAINER_DIR}/*/checkpoint_*.pth")
        if (match := _CHECKPOINT.search(path.name)) and _marker(path).is_file()
    ]
    if not found:
        return None
    step, path = max(found, key=lambda item: (item[0], item[1].stat().st_mtime))
    return path, step


def _marker(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".saved")


def prune(folder: Path, keep: int = KEEP) -> None:
    """Delete all but the newest ``keep`` complete checkpoints in ``folder`` (and markers).

    Done here, after the newest one's marker is written, so that a kill at any
    moment leaves at least one complete checkpoint.
    """
    complete = sorted(
        (int(match.group(1)), path)
        for path in folder.glob("checkpoint_*.pth")
        if (match := _CHECKPOINT.search(path.name)) and _marker(path).is_file()
    )
    for _, path in complete[:-keep]:
        _marker(path).unlink()
        path.unlink()


def drop_incomplete(folder: Path) -> list[Path]:
    """Delete the checkpoints in ``folder`` without a marker (killed while being written).

    coqui's ``continue_path`` takes the highest-numbered file, complete or not.
    """
    dropped = [p for p in folder.glob("checkpoint_*.pth") if not _marker(p).is_file()]
    for path in dropped:
        path.unlink()
    return dropped


def load_samples(config: VitsConfig) -> list[dict[str, Any]]:
    """coqui's training samples of the export (its ``coqui`` formatter)."""
    from TTS.tts.datasets import load_tts_samples

    samples, _ = load_tts_samples(config, eval_split=False)
    return list(samples)


def train(
    settings: Settings, run: TrainingRun, data: Path, steps: int, checkpoint_every: int
) -> TrainResult:
    """Train until ``steps`` steps are done in ``run`` (continuing its newest checkpoint)."""
    from trainer import Trainer, TrainerArgs
    from trainer.generic_utils import KeepAverage
    from TTS.tts.models.vits import Vits

    if steps < 1 or checkpoint_every < 1:
        raise TtsTrainingError(f"steps ({steps}) and checkpoint_every ({checkpoint_every}) >= 1")
    tts = settings.tts
    check_settings(tts)
    loaders.set_torch_threads()
    config = build_config(tts, data, run.dir / TRAINER_DIR)
    samples = load_samples(config)
    previous = latest_checkpoint(run.dir)
    if previous is not None:
        for path in drop_incomplete(previous[0].parent):
            log.warning("dropped %s: written by a run killed while saving it", path)
        args = TrainerArgs(continue_path=str(previous[0].parent))
    else:
        args = TrainerArgs(restore_path=tts.checkpoint)
    model = Vits(config)
    started = time.perf_counter()
    trainer = Trainer(
        args,
        config,
        str(run.dir / TRAINER_DIR),
        model=model,
        train_samples=samples,
        eval_samples=[],
        parse_command_line_args=False,
    )
    if previous is not None:
        # Our checkpoint_<n> holds n steps done; coqui's restore adds one for its own
        # mid-step checkpoints. Undo that, so that no step is skipped.
        trainer.total_steps_done = previous[1]
    start = trainer.total_steps_done
    if start >= steps:
        log.info("run %s has %d steps done already (asked for %d)", run.run_id, start, steps)
    losses: dict[str, list[tuple[int, float]]] = {}
    trainer.keep_avg_train = KeepAverage()
    loader: Any = trainer.get_train_dataloader(samples, verbose=False) if start < steps else []
    while trainer.total_steps_done < steps:
        trainer.callbacks.on_epoch_start(trainer)
        trainer.model.train()
        tick = time.time()
        for index, batch in enumerate(loader):
            _, loss_dict = trainer.train_step(batch, len(loader), index, tick)
            done = trainer.total_steps_done
            for name, value in (loss_dict or {}).items():
                if name.startswith("loss"):
                    losses.setdefault(name, []).append((done, float(value)))
                    run.log_scalar(f"tts/{name}", float(value), done)
            if done % checkpoint_every == 0 or done >= steps:
                trainer.save_checkpoint()
                _marker(trainer.output_path / f"checkpoint_{done}.pth").touch()
                prune(trainer.output_path)
            if done >= steps:
                break
            tick = time.time()
        trainer.epochs_done += 1
    trainer.dashboard_logger.flush()
    newest = latest_checkpoint(run.dir)
    if newest is None:
        raise TtsTrainingError(f"training wrote no checkpoint under {run.dir / TRAINER_DIR}")
    return TrainResult(
        run_id=run.run_id,
        trainer_dir=newest[0].parent,
        checkpoint=newest[0],
        start_step=start,
        steps_done=max(trainer.total_steps_done, newest[1]),
        losses=losses,
        seconds=round(time.perf_counter() - started, 2),
    )


# -- synthesis -----------------------------------------------------------------


def load_model(checkpoint: Path) -> Vits:
    """A trained VITS from a checkpoint and the ``config.json`` next to it, for inference."""
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits

    config = VitsConfig()
    config.load_json(str(checkpoint.parent / "config.json"))
    model = Vits(config)
    model.load_checkpoint(config, str(checkpoint), eval=True)
    return model


def synthesize(model: Vits, text: str, d_vector: np.ndarray) -> np.ndarray:
    """Speech for ``text`` in the voice of ``d_vector``: float32 at the model's rate."""
    import torch

    ids = model.tokenizer.text_to_ids(text)
    if not ids:
        raise TtsTrainingError(f"no character of {text!r} is in the model's vocabulary")
    tokens = torch.as_tensor(ids, dtype=torch.long).unsqueeze(0)
    vector = torch.as_tensor(np.asarray(d_vector, dtype=np.float32)).unsqueeze(0)
    with torch.inference_mode():
        outputs = model.inference(
            tokens,
            aux_input={
                "x_lengths": torch.tensor([tokens.shape[1]]),
                "d_vectors": vector,
                "speaker_ids": None,
                "language_ids": None,
            },
        )
    wav = outputs["model_outputs"][0].detach().cpu().numpy().reshape(-1)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


# -- evaluation ----------------------------------------------------------------


@dataclass(frozen=True)
class EvalItem:
    """One heldout clip: its real audio and the synthesized one, scored."""

    file: str
    speaker: str
    text: str
    similarity_synth: float
    similarity_real: float
    transcript_synth: str
    transcript_real: str
    wer_synth: float
    wer_real: float


@dataclass(frozen=True)
class TtsEvaluation:
    """Speaker similarity and WER of synthesized speech, and of the real clips (the ceiling)."""

    synthesized: tts_data.SpeechScores
    reference: tts_data.SpeechScores
    items: list[EvalItem]
    skipped: int  # heldout clips of speakers without training clips

    def metrics(self) -> dict[str, float]:
        return {
            "eval/similarity_synth": self.synthesized.similarity,
            "eval/wer_synth": self.synthesized.wer,
            "eval/similarity_real": self.reference.similarity,
            "eval/wer_real": self.reference.wer,
            "eval/n": float(self.synthesized.n),
        }

    def summary(self) -> str:
        s, r = self.synthesized, self.reference
        return (
            f"evaluation on {s.n} heldout sentences ({s.words} words): synthesized speaker"
            f" similarity {s.similarity:.3f}, WER {s.wer:.3f}; real clips (ceiling) similarity"
            f" {r.similarity:.3f}, WER {r.wer:.3f}"
            + (
                f"; {self.skipped} heldout clips of speakers without training clips"
                if self.skipped
                else ""
            )
        )


def read_eval_list(data: Path) -> list[dict[str, str]]:
    """The export's ``eval.csv`` rows: file, speaker, text, language."""
    with (data / "eval.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="|", quoting=csv.QUOTE_NONE))


def asr_language(settings: Settings, rows: list[dict[str, str]]) -> str:
    """The language Whisper is told: ``[asr] language``, else the clips' one language, else ""."""
    languages = {row.get("language") or "" for row in rows}
    if settings.asr.language:
        return settings.asr.language
    return languages.pop() if len(languages) == 1 else ""


def _scores(
    settings: Settings,
    audios: list[np.ndarray],
    refs: list[np.ndarray],
    texts: list[str],
    language: str,
) -> tuple[list[float], list[str], list[WerCount]]:
    """Cosine to each reference embedding, Whisper's transcript and its word errors.

    Whisper is told the ``language`` (as zero-shot TTS papers score intelligibility),
    so that noise is not taken for another language.
    """
    gap = np.zeros(ENCODER_RATE // 2, dtype=np.float32)
    regions, pieces, cursor = [], [], 0.0
    for audio in audios:
        pieces += [audio, gap]
        regions.append(Region(cursor, cursor + len(audio) / ENCODER_RATE))
        cursor += (len(audio) + len(gap)) / ENCODER_RATE
    samples = np.concatenate(pieces).astype(np.float32)
    embeddings = embed_regions(loaders.voice_encoder(), samples, list(regions))
    similarities = [tts_data.cosine(e, r) for e, r in zip(embeddings, refs, strict=True)]
    asr = settings.asr
    whisper = loaders.whisper_model(asr.model, asr.compute_type, asr.cpu_threads)
    options = AsrOptions(asr.batch_size, asr.beam_size, language)
    transcripts = transcribe_clips(whisper, samples, regions, options)
    heard = [t.text if t is not None else "" for t in transcripts]
    counts = [wer_count(text, hyp) for text, hyp in zip(texts, heard, strict=True)]
    return similarities, heard, counts


def evaluate(settings: Settings, checkpoint: Path, data: Path) -> TtsEvaluation | None:
    """Score the model at ``checkpoint`` on the heldout clips of the export ``data``.

    At most ``[tts] eval_clips`` clips; None when the export has no heldout clip
    of a speaker with training clips (there is nothing honest to evaluate on).
    """
    read_export(data)
    speakers = json.loads((data / "speakers.json").read_text())
    rows = read_eval_list(data)
    usable = [row for row in rows if row["speaker"] in speakers][: settings.tts.eval_clips]
    if not usable:
        return None
    import soundfile

    model = load_model(checkpoint)
    rate = int(model.config.audio.sample_rate)
    refs = [np.asarray(speakers[row["speaker"]]["embedding"], np.float32) for row in usable]
    texts = [row["text"] for row in usable]
    synth = [
        resample(synthesize(model, row["text"], ref), rate, ENCODER_RATE)
        for row, ref in zip(usable, refs, strict=True)
    ]
    real = []
    for row in usable:
        audio, real_rate = soundfile.read(data / row["file"], dtype="float32")
        real.append(resample(audio, real_rate, ENCODER_RATE))
    language = asr_language(settings, usable)
    sim_s, heard_s, wer_s = _scores(settings, synth, refs, texts, language)
    sim_r, heard_r, wer_r = _scores(settings, real, refs, texts, language)
    items = [
        EvalItem(
            row["file"],
            row["speaker"],
            row["text"],
            round(ss, 4),
            round(sr, 4),
            hs,
            hr,
            round(ws.wer, 4),
            round(wr.wer, 4),
        )
        for row, ss, sr, hs, hr, ws, wr in zip(
            usable, sim_s, sim_r, heard_s, heard_r, wer_s, wer_r, strict=True
        )
    ]

    def total(counts: list[WerCount]) -> WerCount:
        return sum(counts, WerCount(0, 0))

    synth_total, real_total = total(wer_s), total(wer_r)
    return TtsEvaluation(
        synthesized=tts_data.SpeechScores.of(sim_s, synth_total.errors, synth_total.words),
        reference=tts_data.SpeechScores.of(sim_r, real_total.errors, real_total.words),
        items=items,
        skipped=len([row for row in rows if row["speaker"] not in speakers]),
    )
