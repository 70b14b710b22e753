"""Side-by-side video: two motions of the same speaker on the same avatar, for eyes.

The left panel shows one motion (e.g. the real tracked motion), the right panel another
(e.g. the generated one), both rendered by one :class:`~rsatalker_core.render.renderer.AvatarRenderer`
with the same camera and relationship, labelled, with one audio track (the speaker's own
speech) muxed in by :class:`~rsatalker_core.io.video.VideoWriter`. ``rsatalker evaluate
--side-by-side N`` writes one per sample for the first ``N`` samples; the motion
acceptance script (``scripts/accept_motion.py``) writes one for the real DualTalk sample.

**Expression spaces.** The 50 expression coefficients mean different things on different
head models (issue 9): the stand-in head's blendshape weights are not FLAME's PCA
coefficients. A motion whose ``expression_space`` differs from the renderer's head is
shown with its jaw and head pose only (expressions zeroed: the neutral face), which is
what :func:`motion_for_head` does; jaw and head rotation mean the same on every head.
Real DualTalk npz files carry no ``expression_space`` key and are FLAME
(:data:`FLAME_SPACE`); the synthetic corpus and the default motion model are in the
stand-in's space (:data:`STANDIN_SPACE`).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.config import EXP_SLICE, MOTION_DIM
from rsatalker_core.errors import RenderError

__all__ = ["FLAME_SPACE", "STANDIN_SPACE", "compose_panels", "head_space", "motion_for_head",
           "npz_expression_space", "side_by_side_frames", "write_side_by_side"]

#: Expression space of real FLAME motion (DualTalk npz without an ``expression_space`` key).
FLAME_SPACE = "flame"
#: Expression space of the stand-in head (:mod:`rsatalker_core.head.standin`).
STANDIN_SPACE = "rsatalker-standin"
#: Height of the label strip above the panels, pixels.
LABEL_HEIGHT = 20
#: Width of the separator between panels, pixels.
GAP = 4


def npz_expression_space(path: str) -> str:
    """The ``expression_space`` recorded in a motion npz, :data:`FLAME_SPACE` when absent."""
    with np.load(path, allow_pickle=False) as data:
        return str(data["expression_space"]) if "expression_space" in data.files else FLAME_SPACE


def head_space(renderer) -> str:
    """Expression space of a renderer's head: :data:`STANDIN_SPACE` or :data:`FLAME_SPACE`
    (the head layer's own ``expression_space`` when it declares one)."""
    declared = getattr(renderer.flame, "expression_space", None)
    if isinstance(declared, str) and declared:
        return declared
    return STANDIN_SPACE if getattr(renderer.flame, "is_standin", False) else FLAME_SPACE


def motion_for_head(motion: np.ndarray, motion_space: str, head: str) -> np.ndarray:
    """``motion [T, 56]`` as shown on a head of space ``head``: unchanged when the spaces
    agree (``"flame:<file>"`` counts as FLAME), else with the expressions zeroed (jaw and
    head rotation kept)."""
    m = np.array(motion, dtype=np.float32, copy=True)
    if m.ndim != 2 or m.shape[1] != MOTION_DIM:
        raise RenderError(f"motion must be [T, {MOTION_DIM}], got {m.shape}")
    if motion_space.split(":")[0] != head.split(":")[0]:
        m[:, EXP_SLICE] = 0.0
    return m


def _label(width: int, text: str) -> np.ndarray:
    import cv2

    strip = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    scale = 0.4
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    while tw > width - 4 and scale > 0.2:
        scale -= 0.05
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (max(2, (width - tw) // 2), (LABEL_HEIGHT + th) // 2)
    cv2.putText(strip, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def compose_panels(left: np.ndarray, right: np.ndarray, labels: Optional[Tuple[str, str]] = None) -> np.ndarray:
    """``[H, W, 3]`` uint8 ``left`` and ``right`` side by side with a :data:`GAP`-pixel grey
    separator, and a :data:`LABEL_HEIGHT`-pixel label strip on top when ``labels`` are given.

    Returns:
        ``[H (+ LABEL_HEIGHT), 2 W + GAP, 3]`` uint8; the left panel is columns ``0:W``, the
        right panel ``W + GAP:``.

    Raises:
        RenderError: the panels differ in shape or are not ``[H, W, 3]`` uint8.
    """
    a, b = np.asarray(left), np.asarray(right)
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise RenderError(f"panels must be two [H, W, 3] uint8 images of one size, got {a.shape} {a.dtype} and "
                          f"{b.shape} {b.dtype}")
    h, w = a.shape[:2]
    sep = np.full((h, GAP, 3), 128, np.uint8)
    frame = np.concatenate([a, sep, b], axis=1)
    if labels:
        top = np.concatenate([_label(w, labels[0]), np.full((LABEL_HEIGHT, GAP, 3), 128, np.uint8),
                              _label(w, labels[1])], axis=1)
        frame = np.concatenate([top, frame], axis=0)
    return frame


def side_by_side_frames(renderer, left: np.ndarray, right: np.ndarray, relationship=None,
                        labels: Optional[Tuple[str, str]] = None, batch: int = 8) -> Iterable[np.ndarray]:
    """Yield the composed frames of two ``[T, 56]`` motions rendered on ``renderer``
    (:func:`compose_panels`); ``T`` is the shorter of the two lengths.

    Raises:
        RenderError: motions not ``[T, 56]``.
    """
    a, b = np.asarray(left, np.float32), np.asarray(right, np.float32)
    for m in (a, b):
        if m.ndim != 2 or m.shape[1] != MOTION_DIM or len(m) == 0:
            raise RenderError(f"motions must be [T > 0, {MOTION_DIM}], got {m.shape}")
    T = min(len(a), len(b))
    for fa, fb in zip(renderer.render_iter(a[:T], relationship, batch=batch),
                      renderer.render_iter(b[:T], relationship, batch=batch)):
        yield compose_panels(fa, fb, labels)


def write_side_by_side(
    path: str,
    renderer,
    left: np.ndarray,
    right: np.ndarray,
    relationship=None,
    audio: Optional[np.ndarray] = None,
    sample_rate: Optional[int] = None,
    labels: Sequence[str] = ("real", "generated"),
    spaces: Sequence[str] = (FLAME_SPACE, STANDIN_SPACE),
    fps: float = 25.0,
) -> str:
    """Render ``left`` and ``right`` (``[T, 56]`` each, 25 fps) side by side to an mp4.

    Args:
        path: output ``.mp4`` (written atomically by :class:`~rsatalker_core.io.video.VideoWriter`).
        renderer: an :class:`~rsatalker_core.render.renderer.AvatarRenderer`.
        relationship: the relationship both panels render under (the avatar's offsets).
        audio: ``[S]`` mono speech muxed in (e.g. the speaker's own wav); sample_rate: Hz.
        labels: text above the left and right panel; a panel whose expressions are not in
            the head's space gets " (jaw+head)" appended.
        spaces: the expression space of each motion (module docstring); a mismatch with the
            renderer's head zeroes that motion's expressions.

    Returns:
        ``path``.

    Raises:
        RenderError: malformed motions; VideoError: encoding failed (nothing left behind).
    """
    from rsatalker_core.io.video import VideoWriter

    head = head_space(renderer)
    shown, text = [], []
    for m, space, lab in zip((left, right), spaces, labels):
        shown.append(motion_for_head(m, space, head))
        text.append(lab if space.split(":")[0] == head.split(":")[0] else f"{lab} (jaw+head)")
    if audio is not None and sample_rate:
        n = min(len(shown[0]), len(shown[1]))
        audio = np.asarray(audio, np.float32)[: int(round(n * sample_rate / fps))]  # the video's length
    with VideoWriter(path, fps, audio=audio, sample_rate=sample_rate) as video:
        for frame in side_by_side_frames(renderer, shown[0], shown[1], relationship, (text[0], text[1])):
            video.write(frame)
    return path
