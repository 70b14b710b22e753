"""wav2vec 2.0 speech features (the paper's encoder), loaded offline with transformers.

The model comes from a local directory (``config.json`` + weights, e.g. one written by
``save_pretrained`` or ``huggingface-cli download``) or a model id already in the Hugging
Face cache; ``local_files_only=True`` means it is never downloaded. The input is normalised
by the model's :class:`~transformers.Wav2Vec2FeatureExtractor` (zero mean, unit variance per
clip when its ``do_normalize`` is set; the extractor defaults are used when the directory
has no ``preprocessor_config.json``). The 50 Hz ``last_hidden_state`` is brought to the
``T`` video frames by linear interpolation with ``align_corners=True``, as FaceFormer does
(Fan et al., CVPR 2022, ``wav2vec.py``: ``linear_interpolation``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

from rsatalker_core.errors import SpeechEncoderError
from rsatalker_core.speech.encoder import SpeechEncoder

_HOW_TO = (
    "download it once on a machine with internet (e.g. `huggingface-cli download "
    "facebook/wav2vec2-base-960h`) or copy a directory holding config.json and the weights, "
    "then set speech.model_path to that directory or model id"
)


class Wav2Vec2SpeechEncoder(SpeechEncoder):
    """wav2vec 2.0 ``last_hidden_state`` at 25 fps, ``[B, S] -> [B, T, hidden_size]`` (768 for base).

    Args:
        model_path: local directory or cached Hugging Face model id.

    Raises:
        SpeechEncoderError: ``model_path`` empty, or the model is not available offline.
    """

    name = "wav2vec2"

    def __init__(self, model_path: str):
        super().__init__(sample_rate=16000)
        if not model_path:
            raise SpeechEncoderError(
                f"speech.encoder is 'wav2vec2' but speech.model_path is empty: {_HOW_TO}"
            )
        looks_like_path = os.path.isabs(model_path) or model_path.startswith((".", "~"))
        if looks_like_path and not os.path.isdir(os.path.expanduser(model_path)):
            raise SpeechEncoderError(f"wav2vec 2.0 model directory not found: {model_path}; {_HOW_TO}")
        model_path = os.path.expanduser(model_path)
        try:
            self.model = Wav2Vec2Model.from_pretrained(model_path, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SpeechEncoderError(
                f"wav2vec 2.0 model '{model_path}' is not available offline ({first}); {_HOW_TO}"
            ) from exc
        self.model.eval()
        try:
            self.feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(
                model_path, local_files_only=True
            )
        except (OSError, ValueError):
            self.feature_extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000)
        if self.feature_extractor.sampling_rate != self.sample_rate:
            raise SpeechEncoderError(
                f"wav2vec 2.0 model '{model_path}' expects {self.feature_extractor.sampling_rate} Hz "
                f"audio; only 16000 Hz models are supported"
            )
        self.feature_dim = int(self.model.config.hidden_size)

    def encode_frames(self, wav: Tensor, num_frames: int) -> Tensor:  # [B, T*640] -> [B, T, D]
        """``wav [B, T * 640]`` at 16 kHz -> ``[B, T, D]`` (50 Hz states, linearly interpolated)."""
        rows = list(wav.detach().to("cpu", torch.float32).numpy())
        values = self.feature_extractor(rows, sampling_rate=self.sample_rate, return_tensors="np")
        x = torch.from_numpy(np.asarray(values["input_values"], dtype=np.float32)).to(wav.device)
        h = self.model(x).last_hidden_state  # [B, N, D], N ~ 50 Hz
        h = torch.nn.functional.interpolate(
            h.transpose(1, 2), size=num_frames, mode="linear", align_corners=True
        )
        return h.transpose(1, 2).contiguous()
