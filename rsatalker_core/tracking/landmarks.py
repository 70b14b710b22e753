"""MediaPipe FaceMesh landmarks of the partner's face (docs/ros.md "Face tracker").

:class:`FaceLandmarker` wraps MediaPipe's legacy FaceMesh (``mediapipe==0.10.21``, the last
release whose wheel carries the FaceMesh and face-detection models; installed without its
dependency pins, see ``requirements-nodeps.txt``). One RGB image in, the 478 landmarks
(468 face + 10 iris) of ONE selected face out, in pixels, or ``None`` when no face is seen.

MediaPipe is imported lazily, so the rest of :mod:`rsatalker_core.tracking` (the fit, the
filters) works without it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from rsatalker_core.errors import RsatalkerError

__all__ = [
    "NUM_LANDMARKS",
    "IRIS_CENTRES",
    "FACE_OVAL",
    "SELECTIONS",
    "TrackingError",
    "FaceLandmarks",
    "FaceLandmarker",
    "select_face",
]

#: FaceMesh landmarks with iris refinement: 468 face points + 2 x 5 iris points.
NUM_LANDMARKS = 478
#: Iris centres: (subject's right eye, subject's left eye). MediaPipe's 468 lies in the eye
#: whose corners are 33/133 (the subject's right), 473 in the eye of 263/362.
IRIS_CENTRES = (468, 473)
#: The face-oval contour (jaw line, temples, forehead): silhouette points that slide over
#: the surface as the head turns, so the fit trusts them less.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
#: Face selection rules when several faces are seen.
SELECTIONS = ("largest", "centre")


class TrackingError(RsatalkerError):
    """The face tracker cannot run: MediaPipe missing, a bad image, a bad embedding file."""


@dataclass
class FaceLandmarks:
    """The landmarks of one face in one image.

    Attributes:
        points: ``[478, 3]`` float32: x, y in pixels (x right, y down, pixel centres at
            +0.5), z MediaPipe's relative depth (same scale as x, smaller = nearer).
        width, height: image size, pixels.
        num_faces: faces seen in the image (the selected one included).
    """

    points: np.ndarray
    width: int
    height: int
    num_faces: int = 1

    @property
    def bbox(self) -> np.ndarray:
        """``[x0, y0, x1, y1]`` pixels of the 2D landmarks."""
        xy = self.points[:, :2]
        return np.concatenate([xy.min(0), xy.max(0)])

    @property
    def size(self) -> float:
        """Face size in pixels: the diagonal of :attr:`bbox`."""
        b = self.bbox
        return float(np.hypot(b[2] - b[0], b[3] - b[1]))


def select_face(faces: list, width: int, height: int, rule: str = "largest") -> int:
    """Index of the face to track among ``faces`` (each ``[N, >=2]`` pixel points).

    ``"largest"``: the largest landmark bounding box; ``"centre"``: the box centre nearest
    the image centre.

    Raises:
        TrackingError: an unknown rule or no faces.
    """
    if rule not in SELECTIONS:
        raise TrackingError(f"face selection must be one of {', '.join(SELECTIONS)}, got {rule!r}")
    if not faces:
        raise TrackingError("select_face: no faces")
    boxes = np.array([np.concatenate([f[:, :2].min(0), f[:, :2].max(0)]) for f in faces])
    if rule == "largest":
        key = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(np.argmax(key))
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    return int(np.argmin(np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2)))


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the C++ log lines MediaPipe/TFLite print while a graph starts."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


class FaceLandmarker:
    """MediaPipe FaceMesh with iris refinement: RGB image -> :class:`FaceLandmarks`.

    Args:
        max_faces: faces MediaPipe looks for (>= 1); the one tracked is chosen by ``selection``.
        selection: ``"largest"`` or ``"centre"`` (:func:`select_face`).
        video: True for a stream (MediaPipe tracks the face region from frame to frame and
            runs its detector only when it loses it: faster); False for unrelated images.
        min_detection_confidence, min_tracking_confidence: MediaPipe's thresholds in [0, 1].

    Raises:
        TrackingError: MediaPipe is not installed or a bad argument.
    """

    def __init__(
        self,
        max_faces: int = 1,
        selection: str = "largest",
        video: bool = True,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ):
        if selection not in SELECTIONS:
            raise TrackingError(f"face selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        if int(max_faces) < 1:
            raise TrackingError(f"max_faces must be >= 1, got {max_faces!r}")
        try:
            with _quiet_stderr():
                from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise TrackingError(
                "the face tracker needs mediapipe 0.10.21 (pip install --no-deps -r requirements-nodeps.txt)"
            ) from exc
        self.selection = selection
        self.video = bool(video)
        self._options = dict(
            static_image_mode=not video, max_num_faces=int(max_faces), refine_landmarks=True,
            min_detection_confidence=float(min_detection_confidence),
            min_tracking_confidence=float(min_tracking_confidence),
        )
        self._face_mesh = face_mesh
        with _quiet_stderr():
            self._mesh = face_mesh.FaceMesh(**self._options)

    def reset(self) -> None:
        """Forget the tracked face region (video mode): the next image is searched afresh,
        as the first of a new stream."""
        self._mesh.close()
        with _quiet_stderr():
            self._mesh = self._face_mesh.FaceMesh(**self._options)

    def __call__(self, rgb: np.ndarray) -> Optional[FaceLandmarks]:
        """Landmarks of the selected face in ``rgb`` ``[H, W, 3]`` uint8, or ``None`` (no face).

        Raises:
            TrackingError: not an ``[H, W, 3]`` uint8 image.
        """
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise TrackingError(f"image must be [H, W, 3] uint8 RGB, got {img.shape} {img.dtype}")
        H, W = img.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(img))
        if not res.multi_face_landmarks:
            return None
        faces = []
        for f in res.multi_face_landmarks:
            a = np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float32)
            a[:, 0] *= W
            a[:, 1] *= H
            a[:, 2] *= W
            faces.append(a)
        i = select_face(faces, W, H, self.selection) if len(faces) > 1 else 0
        return FaceLandmarks(faces[i], W, H, len(faces))

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
