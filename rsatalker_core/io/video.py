"""Writing rendered frames to mp4, with the speech muxed in.

Frames are encoded with OpenCV's ``VideoWriter``; the audio track is muxed (and the video
re-encoded to H.264 / yuv420p for players) with the static ffmpeg binary that the
``imageio-ffmpeg`` wheel ships, so no system ffmpeg is needed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Optional, Sequence

import numpy as np
import soundfile as sf

from rsatalker_core.errors import RsatalkerError


class VideoError(RsatalkerError):
    """A video could not be written or read."""


def _ffmpeg() -> Optional[str]:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def write_video(
    path: str,
    frames: Sequence[np.ndarray],  # [T, H, W, 3] uint8 RGB
    fps: float = 25.0,
    audio: Optional[np.ndarray] = None,  # [S] float32 mono
    sample_rate: Optional[int] = None,
) -> str:
    """Write RGB frames (and optional mono audio) to an mp4.

    Args:
        path: output ``.mp4``.
        frames: ``[T, H, W, 3]`` uint8 RGB (array or list of arrays).
        fps: frame rate, Hz.
        audio: ``[S]`` float32 samples in [-1, 1]; muxed as AAC when given.
        sample_rate: audio sample rate, Hz (required with ``audio``).

    Returns:
        ``path``.

    Raises:
        VideoError: no frames, inconsistent frame sizes, or encoding failed.
    """
    if len(frames) == 0:
        raise VideoError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "video.mp4")
        writer = cv2.VideoWriter(raw, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise VideoError(f"{path}: OpenCV could not open an mp4 writer")
        try:
            for i, frame in enumerate(frames):
                frame = np.asarray(frame)
                if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                    raise VideoError(
                        f"{path}: frame {i} is {frame.shape} {frame.dtype}, expected ({h}, {w}, 3) uint8"
                    )
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        ffmpeg = _ffmpeg()
        if ffmpeg is None:
            if audio is not None:
                raise VideoError("imageio-ffmpeg is not installed: cannot mux audio")
            os.replace(raw, path)
            return path
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-i", raw]
        if audio is not None:
            if not sample_rate:
                raise VideoError("write_video: sample_rate is required with audio")
            wav = os.path.join(tmp, "audio.wav")
            sf.write(wav, np.asarray(audio, dtype=np.float32), int(sample_rate), subtype="FLOAT")
            cmd += ["-i", wav, "-c:a", "aac", "-shortest"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", path]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise VideoError(f"{path}: ffmpeg failed: {proc.stderr.strip()[-300:]}")
    return path


def read_video_info(path: str) -> dict:
    """Frame count, fps and size of a video (OpenCV), e.g. for tests and evaluation."""
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot open video")
    try:
        n = 0
        while True:
            ok, _ = cap.read()
            if not ok:
                break
            n += 1
        return {
            "frames": n,
            "fps": cap.get(cv2.CAP_PROP_FPS),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        }
    finally:
        cap.release()


def has_audio_stream(path: str) -> bool:
    """True when ffmpeg reports an audio stream in ``path``."""
    ffmpeg = _ffmpeg()
    if ffmpeg is None:
        raise VideoError("imageio-ffmpeg is not installed")
    proc = subprocess.run([ffmpeg, "-hide_banner", "-i", path], capture_output=True, text=True)
    return "Audio:" in proc.stderr
