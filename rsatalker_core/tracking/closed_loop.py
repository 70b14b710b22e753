"""Closed-loop accuracy of the face tracker on renders of an avatar (docs/ros.md "Face tracker").

Render an avatar with known motion from several camera views, track the renders with
MediaPipe and :class:`~rsatalker_core.tracking.fit.LandmarkFitter`, and compare: the check
of ``test/test_tracking.py`` and of ``benchmarks/bench_tracker_accuracy.py``.

:func:`known_motion` makes smooth motion of the channels the tracker must recover (jaw
opening, head rotation, smile, brows, gaze); :data:`TEST_MOTION` is the test's and
:data:`VALIDATION_MOTION` another one (longer, other frequencies and phases, same ranges) on
which the fit's settings are chosen, so the test's figures are not tuned to its motion.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, MOTION_DIM

__all__ = ["known_motion", "TEST_MOTION", "VALIDATION_MOTION", "render_and_landmark", "track", "accuracy",
           "responses", "tool_config", "SMILE", "BROWS", "JAW_OPEN"]

#: Expression coefficient of the stand-in head's smile and brow raise, and the motion column
#: of the jaw's opening (FLAME jaw axis-angle x).
SMILE, BROWS, JAW_OPEN = 1, 3, 50

#: The closed-loop test's motion (2 s at 25 fps).
TEST_MOTION = dict(T=50, head_deg=(12.0, 20.0, 6.0), jaw=0.2)
#: Another motion with the same ranges (4 s, other frequencies and phases).
VALIDATION_MOTION = dict(T=100, head_deg=(12.0, 20.0, 6.0), jaw=0.2, head_hz=(0.3, 0.2, 0.45),
                         head_phase=(1.3, 0.2, 2.5), jaw_hz=0.7, jaw_phase=0.4, smile_hz=0.33,
                         smile_phase=2.2, brow_hz=0.6, brow_phase=0.7)


def known_motion(
    T: int = 50,
    head_deg: Sequence[float] = (12.0, 20.0, 6.0),
    jaw: float = 0.2,
    fps: float = 25.0,
    head_hz: Sequence[float] = (0.35, 0.25, 0.3),
    head_phase: Sequence[float] = (0.0, 1.0, 2.0),
    jaw_hz: float = 0.8,
    jaw_phase: float = 0.0,
    smile_hz: float = 0.4,
    smile_phase: float = 0.5,
    brow_hz: float = 0.55,
    brow_phase: float = 2.0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Smooth known motion: ``(motion [T, 56], eye_pose [T, 6])``.

    Jaw opening ``0..jaw`` radians (raised cosine at ``jaw_hz``), head pitch / yaw / roll
    sinusoids of amplitude ``head_deg`` degrees, smile and brow raise ``0..1.5``
    (coefficients :data:`SMILE`, :data:`BROWS`), gaze pitch 0.2 and yaw 0.3 rad, both eyes
    alike (FLAME axis-angle, radians). Frequencies in Hz, phases in radians.
    """
    t = np.arange(int(T)) / float(fps)
    m = np.zeros((len(t), MOTION_DIM), np.float32)
    m[:, JAW_OPEN] = 0.5 * jaw * (1 - np.cos(2 * np.pi * jaw_hz * t + jaw_phase))
    for k, (deg, f, ph) in enumerate(zip(head_deg, head_hz, head_phase)):
        m[:, HEAD_SLICE.start + k] = np.radians(deg) * np.sin(2 * np.pi * f * t + ph)
    m[:, EXP_SLICE.start + SMILE] = 1.5 * (0.5 + 0.5 * np.sin(2 * np.pi * smile_hz * t + smile_phase))
    m[:, EXP_SLICE.start + BROWS] = 1.5 * (0.5 + 0.5 * np.sin(2 * np.pi * brow_hz * t + brow_phase))
    eye = np.zeros((len(t), 6), np.float32)
    eye[:, 0] = 0.2 * np.sin(2 * np.pi * 0.3 * t)  # pitch
    eye[:, 1] = 0.3 * np.cos(2 * np.pi * 0.2 * t)  # yaw
    eye[:, 3:] = eye[:, :3]
    return m, eye


def tool_config(avatar: str = "", flame_model: str = ""):
    """The configuration the closed-loop tools render with (scripts/build_standin_landmark_embedding.py,
    benchmarks/bench_tracker_accuracy.py): the defaults on the CPU, with an avatar checkpoint
    and a FLAME model file when given (empty: the packaged default avatar, the config's head).

    Raises:
        ConfigError: see :func:`rsatalker_core.config.load_config`.
    """
    from rsatalker_core.config import load_config

    overrides = {"device": "cpu"}
    if avatar:
        overrides["avatar.checkpoint"] = avatar
    if flame_model:
        overrides["flame.model_path"] = flame_model
    return load_config(None, overrides)


def render_and_landmark(
    renderer, motion: np.ndarray, yaws: Iterable[float], video: bool = True, eye_pose: Optional[np.ndarray] = None
) -> Dict[float, tuple]:
    """Render ``motion [T, 56]`` (and gaze ``eye_pose [T, 6]``, radians) from the renderer's
    camera orbited by each yaw (degrees, :func:`~rsatalker_core.render.camera.default_camera`)
    and run MediaPipe on the frames (``video``: as a stream, as the tracker node does). The
    renderer's ``viewmat`` is restored.

    Returns:
        ``{yaw: (camera rotation [3, 3], [FaceLandmarks or None] * T)}``.
    """
    from rsatalker_core.render.camera import default_camera
    from rsatalker_core.tracking.landmarks import FaceLandmarker

    view0 = renderer.viewmat
    out = {}
    try:
        for yaw in yaws:
            view = default_camera(renderer.cfg.render, view0.device, yaw_deg=float(yaw))[0][0]
            renderer.viewmat = view[None]
            with FaceLandmarker(video=video) as lm:
                imgs = renderer.render(motion, eye_pose=eye_pose)
                out[yaw] = (view[:3, :3].cpu().numpy().astype(np.float64), [lm(img) for img in imgs])
    finally:
        renderer.viewmat = view0
    return out


def track(
    flame, embedding, camera_rotation: np.ndarray, landmarks: List, K: np.ndarray, **fitter_kwargs
) -> Tuple[np.ndarray, np.ndarray]:
    """Fit each frame's landmarks in order (warm starts): ``(motion [T, 56], eye_pose [T, 6])``
    estimates (NaN rows where MediaPipe found no face)."""
    from rsatalker_core.tracking.fit import LandmarkFitter

    fit = LandmarkFitter(flame, embedding, camera_rotation=camera_rotation, **fitter_kwargs)
    est = np.full((len(landmarks), MOTION_DIM), np.nan, np.float32)
    eye = np.full((len(landmarks), 6), np.nan, np.float32)
    for i, lm in enumerate(landmarks):
        if lm is None:
            fit.reset()
        else:
            r = fit.fit(lm.points, K)
            est[i], eye[i] = r.motion, r.eye_pose
    return est, eye


def accuracy(
    est: np.ndarray, motion: np.ndarray, eye_est: Optional[np.ndarray] = None, eye: Optional[np.ndarray] = None
) -> Mapping[str, float]:
    """Closed-loop figures of estimates ``est [T, 56]`` against the truth ``motion [T, 56]``
    (frames without a face left out): worst head-rotation error (degrees, over the three
    axes), worst jaw-opening error (radians), and the correlation and fitted slope (tracked
    per true unit: 1 keeps the amplitude) of the jaw, the brows and the smile. With gaze
    ``eye_est, eye [T, 6]``: the lower correlation of the two eyes' pitch and of their yaw,
    and the worst gaze error (radians)."""
    ok = np.isfinite(est).all(1)
    e, m = est[ok].astype(np.float64), motion[ok].astype(np.float64)
    r = lambda c: float(np.corrcoef(e[:, c], m[:, c])[0, 1])
    slope = lambda c: float(np.polyfit(m[:, c], e[:, c], 1)[0])
    j, b, s = JAW_OPEN, EXP_SLICE.start + BROWS, EXP_SLICE.start + SMILE
    out = {
        "tracked": float(ok.mean()),
        "head_deg": float(np.degrees(np.abs(e[:, HEAD_SLICE] - m[:, HEAD_SLICE])).max()),
        "jaw_rad": float(np.abs(e[:, j] - m[:, j]).max()),
        "jaw_r": r(j),
        "jaw_slope": slope(j),
        "brows_r": r(b),
        "brows_slope": slope(b),
        "smile_r": r(s),
        "smile_slope": slope(s),
    }
    if eye_est is not None and eye is not None:
        g, t = eye_est[ok].astype(np.float64), eye[ok].astype(np.float64)
        rg = lambda c: float(np.corrcoef(g[:, c], t[:, c])[0, 1])
        out["gaze_pitch_r"] = min(rg(0), rg(3))
        out["gaze_yaw_r"] = min(rg(1), rg(4))
        out["gaze_rad"] = float(np.abs(g - t)[:, [0, 1, 3, 4]].max())
    return out


def responses(response) -> Dict[str, Optional[object]]:
    """The fit variants compared: ``{"response": response, "no read-out": response without
    its read-outs, "no noise": response without its noise directions (nor read-outs),
    "plain": None}``."""
    return {"response": response, "no read-out": response.without_readout(), "no noise": response.without_noise(),
            "plain": None}
