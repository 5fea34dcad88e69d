"""The VITS configuration a TTS training run uses, and the checks of the ``[tts]`` settings.

With ``[tts] checkpoint`` and ``config`` a run starts from the operator's
pretrained model; without them it trains :func:`tiny_args`, a configuration
small enough to take a few steps on a CPU, which proves the path and produces noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoice.models import tts_data

if TYPE_CHECKING:
    from TTS.tts.configs.vits_config import VitsConfig

    from convoice.config import TtsSettings

RUN_NAME = "convoice-vits"
MAX_INFERENCE_FRAMES = 1000  # about 11.6 s at 22050 Hz: an untrained model's durations are wild


class TtsTrainingError(RuntimeError):
    """Training cannot start or continue; the message says why."""


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
    checkpoints written by :func:`~convoice.training.tts.train` only.
    """
    d_vectors = data / "d_vectors.json"
    config = _operator_config(tts, d_vectors) if tts.config else _tiny_config(tts, d_vectors)
    _set_run(config, tts, data, output)
    return config


def _operator_config(tts: TtsSettings, d_vectors: Path) -> VitsConfig:
    """The operator's ``[tts] config``, conditioned on the export's d-vectors."""
    from TTS.tts.configs.vits_config import VitsConfig

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
    return config


def _tiny_config(tts: TtsSettings, d_vectors: Path) -> VitsConfig:
    """The configuration of :func:`tiny_args`, at the export's sample rate."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import VitsArgs

    return VitsConfig(
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


def _set_run(config: VitsConfig, tts: TtsSettings, data: Path, output: Path) -> None:
    """Our dataset, loading, logging and checkpointing, whatever the model's configuration."""
    from TTS.config.shared_configs import BaseDatasetConfig

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
    config.epochs = 10**9  # train() stops after the steps asked for
    config.print_step = 10  # the console; every step goes to TensorBoard (plot_step)
    config.plot_step = 1
    config.save_step = 10**9  # train() writes the checkpoints
    config.save_n_checkpoints = 10**9  # train() prunes, only complete ones (KEEP)
    config.save_best_after = 10**9
    config.save_on_interrupt = False
    config.mixed_precision = False
    config.min_audio_len = 1
    config.max_audio_len = tts.sample_rate * 30
    config.dashboard_logger = "tensorboard"


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
