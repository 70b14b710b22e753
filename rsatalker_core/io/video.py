"""Streaming mp4 writer: rendered frames and the speech in ONE ffmpeg encoding pass.

:class:`VideoWriter` pipes each RGB frame, as it is rendered, into one ffmpeg process
(the static binary that the ``imageio-ffmpeg`` wheel ships, so no system ffmpeg is
needed), which encodes H.264 / yuv420p and muxes the audio track (AAC) in the same pass.
Memory stays flat in the clip length (the pipe applies back-pressure: a frame is handed
over only when ffmpeg has taken the previous ones).

The mp4 is written to a hidden temporary file next to ``path`` and renamed onto ``path``
only when encoding succeeded: a failure (bad frame, ffmpeg error, an exception or Ctrl-C
in the caller's frame loop) leaves neither a partial ``path`` nor temporary files.

Example:
    >>> with VideoWriter("out.mp4", fps=25, audio=wav, sample_rate=16000) as video:
    ...     for frame in renderer.render_iter(motion, relationship):
    ...         video.write(frame)          # [H, W, 3] uint8 RGB

(ffmpeg is driven directly rather than through ``imageio_ffmpeg.write_frames``, which in
0.8.1 neither checks ffmpeg's exit status nor returns its error output.)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from fractions import Fraction
from typing import IO, Iterable, List, Optional

import numpy as np
import soundfile as sf

from rsatalker_core.errors import RsatalkerError


class VideoError(RsatalkerError):
    """A video could not be written or read."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary of the ``imageio-ffmpeg`` wheel.

    Raises:
        VideoError: ``imageio-ffmpeg`` is not installed or has no binary.
    """
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise VideoError(f"no ffmpeg: imageio-ffmpeg is not usable ({exc})") from exc


class VideoWriter:
    """Write ``[H, W, 3]`` uint8 RGB frames one at a time to an H.264 mp4 (+ AAC audio).

    Use as a context manager (or call :meth:`close` / :meth:`abort` yourself). The frame
    size is fixed by the first frame; odd sizes are padded by one black row/column (yuv420p
    needs even sizes).

    Args:
        path: output file (``.mp4``; the extension picks the container).
        fps: frame rate, Hz (> 0).
        audio: ``[S]`` float samples in [-1, 1] (mono), muxed as AAC; ``None`` = no audio.
        sample_rate: of ``audio``, Hz (required with ``audio``).
        crf: x264 constant rate factor (0-51, lower = better; ffmpeg's default 23).
        preset: x264 speed preset (``ultrafast`` ... ``veryslow``).

    Raises:
        VideoError: bad arguments (here), and from :meth:`write` / :meth:`close`: a frame
            of the wrong shape or dtype, no frames, or ffmpeg failed.
    """

    def __init__(
        self,
        path: str,
        fps: float = 25.0,
        audio: Optional[np.ndarray] = None,
        sample_rate: Optional[int] = None,
        crf: int = 23,
        preset: str = "medium",
    ):
        if not fps or fps <= 0:
            raise VideoError(f"{path}: fps must be > 0, got {fps}")
        if audio is not None and not sample_rate:
            raise VideoError(f"{path}: sample_rate is required with audio")
        self.path = str(path)
        self.fps = float(fps)
        self.crf = int(crf)
        self.preset = str(preset)
        self.frames_written = 0
        self.size: Optional[tuple] = None  # (height, width) of the frames
        self._audio = None if audio is None else np.asarray(audio, dtype=np.float32).reshape(-1)
        self._sample_rate = int(sample_rate) if sample_rate else None
        self._proc: Optional[subprocess.Popen] = None
        self._stderr: Optional[IO[bytes]] = None
        self._tmp_video: Optional[str] = None
        self._tmp_audio: Optional[str] = None
        self._closed = False

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):  # a writer dropped without close(): leave nothing behind
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass

    # ------------------------------------------------------------------ writing
    def _temp_path(self, suffix: str) -> str:
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=suffix, dir=folder)
        os.close(fd)
        return tmp

    def _start(self, h: int, w: int) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)) or ".", exist_ok=True)
        ext = os.path.splitext(self.path)[1] or ".mp4"
        self._tmp_video = self._temp_path(".part" + ext)
        cmd = [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", str(Fraction(self.fps).limit_denominator(1001)), "-i", "-"]
        if self._audio is not None:
            self._tmp_audio = self._temp_path(".part.wav")
            sf.write(self._tmp_audio, self._audio, self._sample_rate, subtype="FLOAT")
            cmd += ["-i", self._tmp_audio, "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac"]
        if h % 2 or w % 2:
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        cmd += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
                "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
        if not ext or ext.lower() == ".mp4":
            cmd += ["-f", "mp4"]
        cmd.append(self._tmp_video)
        self._stderr = tempfile.TemporaryFile()  # anonymous: nothing to clean up
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._stderr)
        except OSError as exc:
            raise VideoError(f"{self.path}: cannot start ffmpeg: {exc}") from exc
        self.size = (h, w)

    def _ffmpeg_error(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()[-400:]

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``[H, W, 3]`` uint8 RGB frame (all frames the size of the first).

        Raises:
            VideoError: wrong shape/dtype (the writer is aborted), ffmpeg failed, or the
                writer is closed.
        """
        if self._closed:
            raise VideoError(f"{self.path}: write() after close()")
        frame = np.asarray(frame)
        if self.size is None and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8:
            self._start(*frame.shape[:2])
        if self.size is None or frame.shape != (*self.size, 3) or frame.dtype != np.uint8:
            expected = f"({self.size[0]}, {self.size[1]}, 3)" if self.size else "(H, W, 3)"
            self.abort()
            raise VideoError(
                f"{self.path}: frame {self.frames_written} is {frame.shape} {frame.dtype}, expected {expected} uint8"
            )
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError) as exc:
            self._proc.wait()
            msg = self._ffmpeg_error() or str(exc)
            self.abort()
            raise VideoError(f"{self.path}: ffmpeg failed at frame {self.frames_written}: {msg}") from exc
        self.frames_written += 1

    def close(self) -> str:
        """Finish encoding and move the file onto ``path``. Returns ``path``.

        Raises:
            VideoError: no frames were written, or ffmpeg failed (nothing is left behind).
        """
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"{self.path}: no frames to write")
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        code = self._proc.wait()
        if code != 0:
            msg = self._ffmpeg_error()
            self.abort()
            raise VideoError(f"{self.path}: ffmpeg failed (exit {code}): {msg}")
        os.replace(self._tmp_video, self.path)
        self._tmp_video = None
        self._cleanup()
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary files; ``path`` is left untouched."""
        self._closed = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        if self._tmp_video is not None and os.path.exists(self._tmp_video):
            os.remove(self._tmp_video)
        self._tmp_video = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp_audio is not None and os.path.exists(self._tmp_audio):
            os.remove(self._tmp_audio)
        self._tmp_audio = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def write_video(
    path: str,
    frames: Iterable[np.ndarray],  # [T, H, W, 3] uint8 RGB, or any iterable of [H, W, 3]
    fps: float = 25.0,
    audio: Optional[np.ndarray] = None,  # [S] float32 mono
    sample_rate: Optional[int] = None,
) -> str:
    """Write RGB frames (and optional mono audio) to an mp4 in one pass (:class:`VideoWriter`).

    Args:
        path: output ``.mp4``.
        frames: ``[T, H, W, 3]`` uint8 RGB, a list of frames, or a generator (streamed).
        fps: frame rate, Hz.
        audio: ``[S]`` float32 samples in [-1, 1]; muxed as AAC when given.
        sample_rate: audio sample rate, Hz (required with ``audio``).

    Returns:
        ``path``.

    Raises:
        VideoError: no frames, inconsistent frame sizes, or encoding failed.
    """
    with VideoWriter(path, fps, audio=audio, sample_rate=sample_rate) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def read_video_info(path: str) -> dict:
    """Frame count, fps and size of a video (OpenCV), e.g. for tests and evaluation.

    Raises:
        VideoError: the file cannot be opened.
    """
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


def read_frames(path: str, max_frames: Optional[int] = None, rgb: bool = True) -> List[np.ndarray]:
    """Decode a video's frames (OpenCV), each ``[H, W, 3]`` uint8, RGB (or OpenCV's BGR
    with ``rgb=False``): all of them, or the first ``max_frames``. For short clips (tests,
    the demo's partner video); datasets read resized windows with
    :func:`rsatalker_core.data.triplets.read_video_frames`.

    Raises:
        VideoError: the file cannot be opened.
    """
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot open video")
    out: List[np.ndarray] = []
    try:
        while max_frames is None or len(out) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            out.append(np.ascontiguousarray(bgr[..., ::-1]) if rgb else bgr)
    finally:
        cap.release()
    return out


def has_audio_stream(path: str) -> bool:
    """True when ffmpeg reports an audio stream in ``path``.

    Raises:
        VideoError: no ffmpeg.
    """
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True)
    return "Audio:" in proc.stderr


def read_audio_track(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of ``path`` to ``[S]`` float32 mono at ``sample_rate`` Hz.

    Raises:
        VideoError: no ffmpeg, or no decodable audio stream.
    """
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:a:0", "-ac", "1",
         "-ar", str(int(sample_rate)), "-f", "f32le", "-"],
        capture_output=True,
    )
    if proc.returncode != 0:
        msg = re.sub(r"\s+", " ", proc.stderr.decode("utf-8", "replace")).strip()[-300:]
        raise VideoError(f"{path}: no decodable audio stream: {msg}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()
