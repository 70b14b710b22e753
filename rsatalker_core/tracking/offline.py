"""Track a recorded video: frames -> DualTalk-layout FLAME npz at 25 fps + 16-kHz wav
(``rsatalker track``; docs/ros.md "Face tracker").

The npz holds ``exp (T, 50)``, ``pose (T, 6)`` = ``[head | jaw]`` axis-angle radians,
``shape (T, 100)`` zeros (the identity is not fitted), ``cam (T, 3)`` DualTalk's
weak-perspective ``(scale, tx, ty)`` (:func:`~rsatalker_core.data.triplets.weak_perspective_camera`)
equivalent to the fitted pinhole pose, ``eye_pose (T, 6)``, ``confidence (T,)``, ``valid
(T,)`` (a face was tracked), ``head_model`` (which head model's expression space ``exp``
is in) and ``fps``. Frames without a face are filled by linear interpolation between the
nearest tracked frames (held at the ends; zeros when no frame was tracked): see ``valid``.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Iterable, Optional, Tuple

import numpy as np

from rsatalker_core.config import FPS, MOTION_DIM
from rsatalker_core.tracking.landmarks import TrackingError

__all__ = ["track_video", "track_timed_frames", "tracked_arrays", "pinhole_to_weak_perspective", "fill_gaps", "head_model_name"]


def head_model_name(flame) -> str:
    """``"rsatalker-standin"`` for the stand-in head, else ``"flame:<file name>"``."""
    return "rsatalker-standin" if getattr(flame, "is_standin", False) else f"flame:{os.path.basename(flame.source)}"


def pinhole_to_weak_perspective(translation: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """DualTalk ``cam (..., 3)`` = ``(s, tx, ty)`` for head translations ``[..., 3]`` (camera
    frame, metres, camera facing the face) seen through ``K``: ``s = 2 fx / (W z)``,
    ``tx = x + (cx - W/2) z / fx``, ``ty = -(y + (cy - H/2) z / fy)`` (DECA convention)."""
    t = np.asarray(translation, dtype=np.float64)
    z = np.maximum(t[..., 2], 1e-6)
    s = 2.0 * K[0, 0] / (width * z)
    tx = t[..., 0] + (K[0, 2] - width / 2) * z / K[0, 0]
    ty = -(t[..., 1] + (K[1, 2] - height / 2) * z / K[1, 1])
    return np.stack([s, tx, ty], -1).astype(np.float32)


def fill_gaps(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``x [T, C]`` with rows where ``valid`` is False linearly interpolated from the valid
    rows (held at the ends; unchanged zeros when none is valid)."""
    x = np.array(x, dtype=np.float32)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return np.zeros_like(x)
    t = np.arange(len(x))
    for c in range(x.shape[1]):
        x[:, c] = np.interp(t, idx, x[idx, c])
    return x


def track_video(
    path: str,
    tracker,
    fps: float = FPS,
    progress: Optional[Callable[[int, int], None]] = None,
    on_frame: Optional[Callable[[np.ndarray, object], None]] = None,
    crop: Optional[Tuple[int, int, int, int]] = None,
) -> Dict[str, np.ndarray]:
    """Track every output frame of a video at ``fps``.

    Output frame ``k`` (time ``k / fps``) takes the last video frame shown at that time, so
    videos at other rates are resampled to ``fps``.

    Args:
        path: a video file OpenCV can read.
        tracker: a :class:`~rsatalker_core.tracking.tracker.FaceTracker` (``video=True``).
        progress: called with ``(frames done, frames total)``.
        on_frame: called with ``(rgb [H, W, 3], TrackedFrame)`` per output frame (overlays).
        crop: ``(x, y, w, h)`` pixels: track only this box of every frame (one person of a
            side-by-side recording); the npz's ``cam`` then refers to the box.

    Returns:
        The npz arrays of the module docstring (without ``head_model``).

    Raises:
        TrackingError: the file cannot be opened or holds no frames, or ``crop`` is not a
            non-empty box inside the frame.
    """
    import cv2

    if not os.path.isfile(path):
        raise TrackingError(f"{path}: no such video file")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise TrackingError(f"{path}: cannot open video")
    try:
        src_fps = cap.get(cv2.CAP_PROP_FPS) or fps
        n_src = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        total = max(int(np.floor(n_src * fps / src_fps + 1e-6)), 0) if n_src > 0 else 0
        rows, frame, j, k = [], None, -1, 0
        W = H = 0
        K = None
        while True:
            want = int(np.floor(k * src_fps / fps + 1e-6))  # source frame shown at time k / fps
            while j < want:
                ok, bgr = cap.read()
                if not ok:
                    bgr = None
                    break
                frame, j = bgr, j + 1
            if j < want or frame is None:
                break
            if crop is not None:
                x, y, w, h = (int(c) for c in crop)
                fh, fw = frame.shape[:2]
                if w < 1 or h < 1 or x < 0 or y < 0 or x + w > fw or y + h > fh:
                    raise TrackingError(f"{path}: crop box {tuple(crop)} (x, y, w, h) is not inside the "
                                        f"{fw}x{fh} frame")
                rgb = np.ascontiguousarray(frame[y : y + h, x : x + w, ::-1])
            else:
                rgb = np.ascontiguousarray(frame[:, :, ::-1])
            H, W = rgb.shape[:2]
            K = tracker.intrinsics(W, H)
            tf = tracker.track(rgb, k / fps, K)
            rows.append(tf)
            if on_frame is not None:
                on_frame(rgb, tf)
            k += 1
            if progress is not None:
                progress(k, max(total, k))
    finally:
        cap.release()
    if not rows:
        raise TrackingError(f"{path}: no video frames could be read")
    return tracked_arrays(rows, K, W, H, fps)


def track_timed_frames(
    frames: Iterable[Tuple[float, np.ndarray]],
    tracker,
    start: float,
    num_frames: int,
    fps: float = FPS,
    K: Optional[np.ndarray] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Dict[str, np.ndarray]:
    """Track frames with capture times (a recorded camera topic) on a regular 25-fps grid.

    Output frame ``k`` (time ``start + k / fps``) takes the latest input frame captured at
    or before that time (the first input frame before any was captured), so irregular or
    faster cameras are resampled to ``fps`` and dropped frames are held.

    Args:
        frames: ``(capture time s, rgb [H, W, 3] uint8)`` in time order.
        tracker: a :class:`~rsatalker_core.tracking.tracker.FaceTracker`.
        start: time of output frame 0, seconds (same clock as the frames').
        num_frames: output frames ``T``.
        K: ``[3, 3]`` intrinsics (None: the tracker's default for the frame size).

    Returns:
        The npz arrays of the module docstring (without ``head_model``), ``T`` rows.

    Raises:
        TrackingError: no frames, ``num_frames < 1``, or frames out of time order.
    """
    if num_frames < 1:
        raise TrackingError(f"num_frames must be >= 1, got {num_frames}")
    it = iter(frames)
    cur = nxt = next(it, None)
    if cur is None:
        raise TrackingError("no camera frames to track")
    nxt = next(it, None)
    rows = []
    H, W = cur[1].shape[:2]
    Kk = None if K is None else np.asarray(K, dtype=np.float64)
    for k in range(int(num_frames)):
        t = start + k / fps
        while nxt is not None and nxt[0] <= t + 1e-6:
            if nxt[0] < cur[0]:
                raise TrackingError(f"camera frames out of time order ({nxt[0]:.3f} s after {cur[0]:.3f} s)")
            cur, nxt = nxt, next(it, None)
        rgb = cur[1]
        H, W = rgb.shape[:2]
        Kf = tracker.intrinsics(W, H) if Kk is None else Kk
        rows.append(tracker.track(rgb, t, Kf))
        if progress is not None:
            progress(k + 1, int(num_frames))
    return tracked_arrays(rows, tracker.intrinsics(W, H) if Kk is None else Kk, W, H, fps)


def tracked_arrays(rows, K: np.ndarray, W: int, H: int, fps: float = FPS) -> Dict[str, np.ndarray]:
    """The npz arrays of the module docstring from :class:`TrackedFrame` rows (gaps filled)."""
    T = len(rows)
    valid = np.array([r.has_face for r in rows])
    motion = np.zeros((T, MOTION_DIM), np.float32)
    eye = np.zeros((T, 6), np.float32)
    trans = np.zeros((T, 3), np.float32)
    for i, r in enumerate(rows):
        if r.has_face:
            motion[i], eye[i], trans[i] = r.motion, r.eye_pose, r.translation
    motion, eye = fill_gaps(motion, valid), fill_gaps(eye, valid)
    trans = fill_gaps(trans, valid)
    if not valid.any():
        trans[:, 2] = 1.0
    from rsatalker_core.io.motion_npz import motion_to_dualtalk

    out = motion_to_dualtalk(motion)
    out.update(
        shape=np.zeros((T, 100), np.float32),
        cam=pinhole_to_weak_perspective(trans, K, W, H),
        eye_pose=eye,
        confidence=np.array([r.confidence for r in rows], np.float32),
        valid=valid,
        fps=np.array(float(fps)),
    )
    return out
