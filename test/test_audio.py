"""Audio I/O: reading real files, resampling, the 25-fps frame clock and file errors."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rsatalker_core.speech.audio import load_audio, num_frames_for, resample, validate_sample_rate
from rsatalker_core.errors import AudioError, ConfigError

CODEC2_SPEECH = Path("/usr/share/codec2/raw/speech_orig_16k.wav")  # Debian codec2-examples


def _tone(freq, sr, seconds, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1.0 / sr)[np.argmax(spec)]


# ---------------------------------------------------------------- real speech files
def test_dualtalk_float32_wav_spans_its_587_motion_frames(dualtalk_sample):
    wav, sr = load_audio(dualtalk_sample["speaker1_wav"])
    assert sr == 16000 and wav.dtype == np.float32 and wav.ndim == 1
    assert sf.info(str(dualtalk_sample["speaker1_wav"])).subtype == "FLOAT"  # format tag 3
    assert 23.4 < len(wav) / sr < 23.5
    assert np.abs(wav).max() <= 1.0 and wav.std() > 1e-3
    motion = np.load(dualtalk_sample["speaker2_npz"])
    assert num_frames_for(len(wav), sr) == motion["exp"].shape[0] == 587


def test_dualtalk_loaded_at_other_rates_keeps_frame_count(dualtalk_sample):
    wav16, _ = load_audio(dualtalk_sample["speaker2_wav"])
    for target in (8000, 44100, 48000):
        wav, sr = load_audio(dualtalk_sample["speaker2_wav"], target)
        assert sr == target
        assert len(wav) == int(np.ceil(len(wav16) * target / 16000))  # nothing cropped
        assert num_frames_for(len(wav), sr) == 587
    keep, sr = load_audio(dualtalk_sample["speaker2_wav"], None)
    assert sr == 16000 and np.array_equal(keep, wav16)


def test_codec2_pcm16_speech_is_scaled_to_unit_range():
    if not CODEC2_SPEECH.is_file():
        pytest.skip(f"{CODEC2_SPEECH} absent (Debian package codec2-examples)")
    wav, sr = load_audio(CODEC2_SPEECH)
    assert sr == 16000 and wav.dtype == np.float32
    assert 0.05 < np.abs(wav).max() <= 1.0
    assert num_frames_for(len(wav), sr) == len(wav) * 25 // 16000


def test_stereo_is_downmixed_and_flac_is_read(tmp_path):
    left, right = _tone(440, 22050, 0.5), _tone(440, 22050, 0.5, amp=0.1)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 22050, subtype="PCM_24")
    wav, sr = load_audio(path, None)
    assert sr == 22050 and wav.shape == left.shape
    np.testing.assert_allclose(wav, (left + right) / 2, atol=1e-5)


# ---------------------------------------------------------------- resampling
def test_resample_keeps_tone_frequency_and_length():
    x = _tone(1000, 44100, 1.0)
    y = resample(x, 44100, 16000)
    assert y.dtype == np.float32 and len(y) == 16000
    assert abs(_peak_hz(y, 16000) - 1000) < 2
    np.testing.assert_allclose(np.sqrt(np.mean(y[1000:-1000] ** 2)), 0.5 / np.sqrt(2), rtol=0.01)


def test_resample_filters_aliases():
    # A 7 kHz tone cannot exist at 8 kHz; naive decimation would fold it to 1 kHz.
    y = resample(_tone(7000, 44100, 1.0), 44100, 8000)
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 0.01


def test_resample_torch_tensor_round_trip():
    x = torch.from_numpy(np.stack([_tone(300, 16000, 0.5), _tone(600, 16000, 0.5)]))
    y = resample(x, 16000, 48000)
    assert isinstance(y, torch.Tensor) and y.dtype == x.dtype and y.shape == (2, 24000)
    back = resample(y, 48000, 16000)
    assert back.shape == x.shape
    assert torch.allclose(back[:, 200:-200], x[:, 200:-200], atol=2e-3)
    assert resample(x, 16000, 16000) is x


@pytest.mark.parametrize("bad", [0, -16000, 1000, 500000, 16000.5, "16000", None, True])
def test_validate_sample_rate_rejects(bad):
    with pytest.raises(AudioError):
        validate_sample_rate(bad)


def test_validate_sample_rate_accepts():
    assert validate_sample_rate(16000) == 16000
    assert validate_sample_rate(np.int64(44100)) == 44100
    assert validate_sample_rate(48000.0) == 48000


# ---------------------------------------------------------------- frame clock
def test_num_frames_counts_complete_frames():
    assert num_frames_for(375808, 16000) == 587  # 587.2 frames
    assert num_frames_for(640, 16000) == 1
    assert num_frames_for(639, 16000) == 0
    assert num_frames_for(0, 16000) == 0
    assert num_frames_for(1764, 44100) == 1
    assert num_frames_for(16000, 16000, fps=30) == 30
    with pytest.raises(AudioError):
        num_frames_for(-1, 16000)
    with pytest.raises(AudioError):
        num_frames_for(100, 0)
    with pytest.raises(ConfigError):
        num_frames_for(100, 16000, fps=0)


# ---------------------------------------------------------------- errors name the file
def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="not found.*nope.wav"):
        load_audio(path)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not a RIFF file\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file.*notes.wav"):
        load_audio(path)


def test_truncated_float_wav(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, _tone(200, 16000, 1.0), 16000, subtype="FLOAT")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated.*cut.wav|cut.wav.*truncated"):
        load_audio(cut)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(data[:30])
    with pytest.raises(AudioError, match="header.wav"):
        load_audio(header_only)
    assert len(load_audio(full)[0]) == 16000  # the intact file reads in full


def test_truncated_real_dualtalk_wav(dualtalk_sample, tmp_path):
    data = Path(dualtalk_sample["speaker1_wav"]).read_bytes()
    cut = tmp_path / "dualtalk_cut.wav"
    cut.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(AudioError, match="dualtalk_cut.wav is truncated"):
        load_audio(cut)


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no samples.*empty.wav|empty.wav.*no samples"):
        load_audio(path)


def test_nan_samples(tmp_path):
    x = _tone(300, 16000, 0.2)
    x[100] = np.nan
    x[200] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav.*2 NaN/Inf"):
        load_audio(path)


def test_bad_target_rate(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, _tone(300, 16000, 0.1), 16000)
    with pytest.raises(AudioError):
        load_audio(path, target_sr=100)
