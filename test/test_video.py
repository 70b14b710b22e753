"""The streaming mp4 writer (rsatalker_core/io/video.py): one pass, atomic, nothing left on failure."""

import os

import numpy as np
import pytest

import rsatalker_core.io.video as video
from rsatalker_core.io.video import (
    VideoError,
    VideoWriter,
    has_audio_stream,
    read_audio_track,
    read_frames,
    read_video_info,
)

SR = 16000


def _frames(n, h=48, w=64):
    """n distinct [h, w, 3] uint8 frames: a bar that moves right."""
    out = np.full((n, h, w, 3), 255, np.uint8)
    for i in range(n):
        out[i, :, (2 * i) % w : (2 * i) % w + 8] = (200, 30, 30)
    return out


def _tone(seconds):
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_streaming_writer_frames_size_fps_and_audio(tmp_path):
    path = tmp_path / "out.mp4"
    frames = _frames(50)
    with VideoWriter(str(path), 25, audio=_tone(2.0), sample_rate=SR) as w:
        for f in frames:
            w.write(f)
            assert not path.exists()  # only the finished file appears under its name
        assert w.frames_written == 50
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]
    info = read_video_info(str(path))
    assert (info["frames"], info["width"], info["height"]) == (50, 64, 48)
    assert abs(info["fps"] - 25.0) < 1e-3
    assert has_audio_stream(str(path))
    track = read_audio_track(str(path), SR)
    assert abs(len(track) / SR - 2.0) < 0.03  # the audio spans the 50 frames (2 s)
    # the tone itself came through (AAC is lossy: compare energy)
    assert abs(np.sqrt((track[SR // 2 : SR] ** 2).mean()) - 0.3 / np.sqrt(2)) < 0.03


def test_write_video_accepts_a_generator_and_no_audio(tmp_path):
    path = tmp_path / "gen.mp4"
    video.write_video(str(path), (f for f in _frames(10)), 25)
    assert read_video_info(str(path))["frames"] == 10
    assert not has_audio_stream(str(path))


def test_read_frames_rgb_bgr_and_max_frames(tmp_path):
    path = tmp_path / "bar.mp4"
    video.write_video(str(path), _frames(10), 25)
    rgb = read_frames(str(path))
    assert len(rgb) == 10 and rgb[0].shape == (48, 64, 3) and rgb[0].dtype == np.uint8
    bar = rgb[3][:, 7]  # inside frame 3's bar (columns 6..13): red, through H.264
    assert bar[:, 0].mean() > 150 and bar[:, 2].mean() < 90
    bgr = read_frames(str(path), max_frames=4, rgb=False)
    assert len(bgr) == 4 and np.array_equal(bgr[3], rgb[3][..., ::-1])
    with pytest.raises(VideoError, match="cannot open"):
        read_frames(str(tmp_path / "missing.mp4"))


def test_odd_size_is_padded_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    video.write_video(str(path), _frames(5, h=33, w=47), 25)
    info = read_video_info(str(path))
    assert (info["frames"], info["width"], info["height"]) == (5, 48, 34)


def test_exception_mid_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="render failed"):
        with VideoWriter(str(path), 25, audio=_tone(2.0), sample_rate=SR) as w:
            for i, f in enumerate(_frames(50)):
                if i == 20:
                    raise RuntimeError("render failed")
                w.write(f)
    assert os.listdir(tmp_path) == []


def test_failure_keeps_an_existing_file_untouched(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous result")
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(str(path), 25) as w:
            w.write(_frames(1)[0])
            raise KeyboardInterrupt
    assert path.read_bytes() == b"previous result"
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_bad_frame_mid_write_is_a_clear_error_and_leaves_nothing(tmp_path):
    frames = _frames(3)
    with pytest.raises(VideoError, match=r"frame 2 is \(10, 64, 3\)"):
        video.write_video(str(tmp_path / "bad.mp4"), [frames[0], frames[1], frames[2][:10]], 25)
    with pytest.raises(VideoError, match="frame 0 .* float32"):
        video.write_video(str(tmp_path / "float.mp4"), [frames[0].astype(np.float32)], 25)
    with pytest.raises(VideoError, match="no frames"):
        video.write_video(str(tmp_path / "empty.mp4"), [], 25)
    assert os.listdir(tmp_path) == []


def test_ffmpeg_failure_is_a_video_error_and_leaves_nothing(tmp_path, monkeypatch):
    # An ffmpeg that exits with an error at once (the binary exists, the encode fails).
    monkeypatch.setattr(video, "ffmpeg_exe", lambda: "false")
    with pytest.raises(VideoError, match="ffmpeg failed"):
        video.write_video(str(tmp_path / "out.mp4"), _frames(200, 256, 256), 25)
    assert os.listdir(tmp_path) == []


def test_bad_arguments():
    with pytest.raises(VideoError, match="sample_rate"):
        VideoWriter("x.mp4", 25, audio=_tone(0.1))
    with pytest.raises(VideoError, match="fps"):
        VideoWriter("x.mp4", 0)
    w = VideoWriter("never.mp4", 25)
    w.abort()
    with pytest.raises(VideoError, match="after close"):
        w.write(_frames(1)[0])
    assert not os.path.exists("never.mp4")
