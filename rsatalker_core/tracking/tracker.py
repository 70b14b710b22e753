"""Camera frames -> the partner's FLAME motion (docs/ros.md "Face tracker").

:class:`FaceTracker` chains MediaPipe landmarks (:mod:`.landmarks`), the fit of the loaded
head model's parameters (:mod:`.fit`) and One-Euro smoothing (:mod:`.smoothing`), and keeps a
clear face / no-face state: a frame without a face, or whose fit is too poor to trust, is
reported with ``has_face=False`` and no motion (never stale or garbage parameters), and the
next face starts a fresh fit and a fresh filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from rsatalker_core.config import MOTION_DIM
from rsatalker_core.tracking.embedding import LandmarkEmbedding, embedding_for
from rsatalker_core.tracking.fit import FitResult, LandmarkFitter, default_intrinsics
from rsatalker_core.tracking.landmarks import FaceLandmarker, FaceLandmarks
from rsatalker_core.tracking.response import LandmarkResponse, load_response
from rsatalker_core.tracking.smoothing import OneEuroFilter

__all__ = ["TrackedFrame", "FaceTracker", "FACE", "NO_FACE", "confidence_from_rms"]

FACE = "face"
NO_FACE = "no_face"


def confidence_from_rms(rms_rel: float, sigma: float = 3.0) -> float:
    """Per-frame confidence in [0, 1] from the fit's RMS residual in percent of the face
    size: ``exp(-0.5 (rms / sigma)^2)`` (1 %: 0.95, 3 %: 0.61, 6 %: 0.14)."""
    if not np.isfinite(rms_rel):
        return 0.0
    return float(np.exp(-0.5 * (rms_rel / sigma) ** 2))


@dataclass
class TrackedFrame:
    """One camera frame's result.

    Attributes:
        t: capture time, seconds (as given to :meth:`FaceTracker.track`).
        has_face: a face was seen and fitted with at least the minimum confidence.
        confidence: in [0, 1] (0 without a face; :func:`confidence_from_rms`).
        motion: ``[56]`` float32 ``[exp 50 | jaw 3 | head 3]`` (radians), smoothed; None
            without a face.
        eye_pose: ``[6]`` float32 left | right eye axis-angle, radians; None without a face.
        translation: ``[3]`` float32 head position in the camera frame, metres; None without.
        landmarks: the MediaPipe landmarks (None when no face was detected).
        fit: the unsmoothed fit (None when no face was detected).
    """

    t: float
    has_face: bool
    confidence: float
    motion: Optional[np.ndarray] = None
    eye_pose: Optional[np.ndarray] = None
    translation: Optional[np.ndarray] = None
    landmarks: Optional[FaceLandmarks] = None
    fit: Optional[FitResult] = None


class FaceTracker:
    """Track one face through a stream of RGB frames (module docstring).

    Args:
        flame: the loaded :class:`~rsatalker_core.head.flame.FlameModel` whose parameters
            are fitted (the one the motion model and renderer use).
        embedding: a :class:`LandmarkEmbedding`, a path to FLAME's MediaPipe embedding npz,
            or None (the stand-in's packaged one; official FLAME then raises).
        response: how MediaPipe reads the tracked avatar
            (:class:`~rsatalker_core.tracking.response.LandmarkResponse`, a path to its npz,
            or ``"avatar"``: the default avatar's packaged one), for tracking renders of that
            avatar; None or ``""`` for real people.
        selection: ``"largest"`` or ``"centre"``: which face when several are seen.
        max_faces: faces MediaPipe looks for.
        smoothing: apply the One-Euro filter to motion, gaze and translation.
        min_cutoff, beta: One-Euro parameters (Hz; per unit speed).
        min_confidence: below this a fitted frame counts as no face.
        hfov_deg: horizontal field of view assumed when no intrinsics are given, degrees.
        video: MediaPipe's video mode (tracks the face region between frames).
        landmarker: a ready :class:`FaceLandmarker` (overrides selection/max_faces/video).
        fitter_kwargs: passed to :class:`LandmarkFitter`.

    Raises:
        TrackingError: MediaPipe missing, no embedding for an official FLAME, or an
            unreadable response file.
    """

    def __init__(
        self,
        flame,
        embedding=None,
        response=None,
        selection: str = "largest",
        max_faces: int = 2,
        smoothing: bool = True,
        min_cutoff: float = 1.5,
        beta: float = 0.5,
        min_confidence: float = 0.2,
        hfov_deg: float = 60.0,
        video: bool = True,
        landmarker: Optional[FaceLandmarker] = None,
        **fitter_kwargs,
    ):
        if not isinstance(embedding, LandmarkEmbedding):
            embedding = embedding_for(flame, embedding or "")
        self.embedding = embedding
        if response and not isinstance(response, LandmarkResponse):
            response = load_response(str(response))
        self.fitter = LandmarkFitter(flame, embedding, response=response or None, **fitter_kwargs)
        self.landmarker = landmarker or FaceLandmarker(max_faces=max_faces, selection=selection, video=video)
        self.filter = OneEuroFilter(min_cutoff, beta) if smoothing else None
        self.min_confidence = float(min_confidence)
        self.hfov_deg = float(hfov_deg)
        self.state = NO_FACE

    def reset(self) -> None:
        """Drop the warm start and filter history (e.g. after a camera switch)."""
        self.fitter.reset()
        if self.filter is not None:
            self.filter.reset()
        self.state = NO_FACE

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """``K [3, 3]`` used when a frame comes without intrinsics (:func:`default_intrinsics`)."""
        return default_intrinsics(width, height, self.hfov_deg)

    def track(self, rgb: np.ndarray, t: float, K: Optional[np.ndarray] = None) -> TrackedFrame:
        """Track one frame.

        Args:
            rgb: ``[H, W, 3]`` uint8 RGB.
            t: capture time, seconds (drives the filter).
            K: ``[3, 3]`` intrinsics, pixels (None: :meth:`intrinsics`).

        Returns:
            :class:`TrackedFrame`; :attr:`state` becomes ``"face"`` or ``"no_face"``.

        Raises:
            TrackingError: not an ``[H, W, 3]`` uint8 image.
        """
        lm = self.landmarker(rgb)
        if lm is None:
            return self._lost(t, None, None)
        K = self.intrinsics(lm.width, lm.height) if K is None else np.asarray(K, dtype=np.float64)
        fit = self.fitter.fit(lm.points, K)
        conf = confidence_from_rms(fit.rms_rel)
        sane = np.isfinite(fit.params).all() and fit.translation[2] > 0
        if not sane or conf < self.min_confidence:
            return self._lost(t, lm, fit)
        x = np.concatenate([fit.motion, fit.eye_pose, fit.translation])
        if self.filter is not None:
            x = self.filter(x, t)
        self.state = FACE
        x = x.astype(np.float32)
        return TrackedFrame(float(t), True, conf, x[:MOTION_DIM], x[MOTION_DIM : MOTION_DIM + 6],
                            x[MOTION_DIM + 6 :], lm, fit)

    def _lost(self, t: float, lm, fit) -> TrackedFrame:
        self.fitter.reset()
        if self.filter is not None:
            self.filter.reset()
        self.state = NO_FACE
        return TrackedFrame(float(t), False, 0.0, landmarks=lm, fit=fit)

    def close(self) -> None:
        self.landmarker.close()
