import os

import numpy as np
import pytest

from rsatalker_core.speech.dialogue import DEBIAN_SPEECH, debian_dialogue, make_dialogue, split_phrases
from rsatalker_core.errors import AudioError
from rsatalker_core.io.video import VideoError, has_audio_stream, read_video_info, write_video

SR = 16000


def _tone_bursts(bursts, sr=SR):
    """Bursts of a 200 Hz tone of the given (start, end) seconds in 6 s of silence."""
    x = np.zeros(6 * sr, np.float32)
    t = np.arange(len(x)) / sr
    for a, b in bursts:
        m = (t >= a) & (t < b)
        x[m] = 0.5 * np.sin(2 * np.pi * 200 * t[m])
    return x


def test_split_phrases_finds_pauses():
    x = _tone_bursts([(0.5, 1.5), (2.5, 3.5), (4.0, 5.0)])
    phrases = split_phrases(x, SR)
    assert len(phrases) == 3
    for (a, b), (ea, eb) in zip(phrases, [(0.5, 1.5), (2.5, 3.5), (4.0, 5.0)]):
        assert abs(a / SR - ea) < 0.1 and abs(b / SR - eb) < 0.1


def test_make_dialogue_alternates_and_never_overlaps():
    a = _tone_bursts([(0.5, 1.5), (2.5, 3.5)])
    b = _tone_bursts([(1.0, 2.0), (3.0, 4.5)])
    t0, t1, turns = make_dialogue([a, b], SR, duration=12.0)
    assert len(t0) == len(t1) == 12 * SR
    speakers = [t.speaker for t in turns]
    assert 0 in speakers and 1 in speakers
    both = (np.abs(t0) > 1e-3) & (np.abs(t1) > 1e-3)
    assert both.mean() < 0.001
    # Turns alternate: consecutive turns by different speakers happen.
    assert sum(s != p for s, p in zip(speakers[1:], speakers[:-1])) >= 3


@pytest.mark.skipif(not all(os.path.isfile(p) for p in DEBIAN_SPEECH), reason="codec2-examples not installed")
def test_debian_dialogue_is_real_speech():
    t0, t1, turns = debian_dialogue(SR, duration=15.0)
    assert len(turns) >= 4
    for tr in (t0, t1):
        assert np.abs(tr).max() > 0.1  # both people speak
        assert (np.abs(tr) < 1e-4).mean() > 0.2  # and are silent while the other speaks


def test_debian_dialogue_missing_file(tmp_path):
    with pytest.raises(AudioError, match="codec2-examples"):
        debian_dialogue(paths=[str(tmp_path / "a.wav"), str(tmp_path / "b.wav")])


def test_write_video_with_audio(tmp_path):
    frames = np.zeros((30, 48, 64, 3), np.uint8)
    frames[:, :, :32, 0] = 255
    audio = (0.2 * np.sin(np.arange(int(1.2 * SR)) * 0.05)).astype(np.float32)
    path = str(tmp_path / "v.mp4")
    write_video(path, frames, 25, audio=audio, sample_rate=SR)
    info = read_video_info(path)
    assert info["frames"] == 30 and (info["width"], info["height"]) == (64, 48)
    assert abs(info["fps"] - 25) < 0.01
    assert has_audio_stream(path)
    write_video(str(tmp_path / "silent.mp4"), frames, 25)
    assert not has_audio_stream(str(tmp_path / "silent.mp4"))
    with pytest.raises(VideoError, match="no frames"):
        write_video(str(tmp_path / "e.mp4"), [], 25)
    with pytest.raises(VideoError, match="frame 1"):
        write_video(str(tmp_path / "bad.mp4"), [frames[0], frames[0][:10]], 25)
