"""The head driver's per-frame pipeline: FLAME frame -> joint command (ROS-free).

For each frame (the ``head_driver`` node calls :meth:`HeadDriver.step` per
``avatar/flame_params`` message):

1. validate: ``motion`` must be ``[56]`` and ``eye_pose`` ``[6]``, all finite; anything else
   is dropped (``None`` returned, the reason in :attr:`HeadDriver.last_drop` and a debug log
   line, counted in :attr:`HeadDriver.dropped`; the node logs a throttled warning);
2. map to joint targets (:class:`~rsatalker_core.robot.head_mapping.LinearHeadMap`) and clamp
   them to the position limits (so extreme input cannot wind the filter up);
3. smooth (One-Euro, :class:`rsatalker_core.tracking.smoothing.OneEuroFilter`, or none);
4. lead: extrapolate ``lead_ms`` ahead along the smoothed targets' velocity (low-passed at
   ``d_cutoff_hz``), to hide the robot's actuation latency;
5. limit (:class:`~rsatalker_core.robot.limits.JointLimiter`): position, velocity and
   acceleration limits, never exceeded.

Time is the caller's (seconds, e.g. the receive time); a frame not later than the previous
one is dropped, gaps longer than :data:`MAX_DT` s are stepped as :data:`MAX_DT`, and the
first frame as one frame period (1/25 s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from rsatalker_core.config import FPS, MOTION_DIM
from rsatalker_core.robot.head_config import HeadDriverConfig
from rsatalker_core.robot.head_mapping import LinearHeadMap
from rsatalker_core.robot.limits import JointLimiter
from rsatalker_core.tracking.smoothing import OneEuroFilter

__all__ = ["JointCommand", "HeadDriver", "MAX_DT"]

log = logging.getLogger(__name__)

#: Longest step, s: after a pause the joints move on as if 0.5 s had passed.
MAX_DT = 0.5


@dataclass
class JointCommand:
    """One command for the head.

    Attributes:
        names: joint names, in configuration order.
        position: ``[J]`` joint units (radians for revolute joints).
        velocity: ``[J]`` units/s.
        acceleration: ``[J]`` units/s^2 (the step's, within the limits).
        time: the frame's time, s (the caller's clock).
    """

    names: List[str]
    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    time: float


class HeadDriver:
    """FLAME frames in, limited joint commands out (module docstring).

    Args:
        config: a validated :class:`HeadDriverConfig`
            (:func:`rsatalker_core.robot.head_config.load_head_driver_config`).
    """

    def __init__(self, config: HeadDriverConfig):
        self.config = config
        joints = config.joints
        self.names = [j.name for j in joints]
        self.map = LinearHeadMap(joints)
        self.p_min = np.array([j.min_position for j in joints], np.float64)
        self.p_max = np.array([j.max_position for j in joints], np.float64)
        self.limiter = JointLimiter(self.p_min, self.p_max, [j.max_velocity for j in joints],
                                    [j.max_acceleration for j in joints], [j.start for j in joints])
        s = config.smoothing
        self.filter = OneEuroFilter(s.min_cutoff_hz, s.beta, s.d_cutoff_hz) if s.method == "one_euro" else None
        self.lead_s = config.lead_ms * 1e-3
        self._d_cutoff = s.d_cutoff_hz
        self._t: Optional[float] = None
        self._smoothed: Optional[np.ndarray] = None
        self._rate = np.zeros(len(joints))
        self.dropped = 0
        self.last_drop = ""
        self.frames = 0

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        self.last_drop = reason
        log.debug("head driver: frame dropped: %s (%d so far)", reason, self.dropped)

    def step(self, motion, eye_pose, t: float) -> Optional[JointCommand]:
        """Process one frame received at ``t`` s.

        Args:
            motion: ``[56]`` ``[exp 50 | jaw 3 | head 3]`` (radians for rotations).
            eye_pose: ``[6]`` left then right eye, axis-angle radians.
            t: the frame's time, s.

        Returns:
            the command, or ``None`` when the frame was dropped (malformed, or not later
            than the previous one); :attr:`last_drop` says why.
        """
        try:
            m = np.asarray(motion, dtype=np.float64).reshape(-1)
            e = np.asarray(eye_pose, dtype=np.float64).reshape(-1)
            t = float(t)
        except (TypeError, ValueError) as exc:
            self._drop(f"not numeric ({exc})")
            return None
        if m.shape != (MOTION_DIM,) or e.shape != (6,):
            self._drop(f"motion has {m.size} values (expected {MOTION_DIM}) and eye_pose {e.size} (expected 6)")
            return None
        if not (np.isfinite(m).all() and np.isfinite(e).all() and np.isfinite(t)):
            self._drop("non-finite values (NaN or inf)")
            return None
        if self._t is not None and t <= self._t:
            self._drop(f"time {t:.6f} s not after the previous frame's {self._t:.6f} s")
            return None
        target = np.clip(self.map(m, e), self.p_min, self.p_max)
        target = np.where(np.isfinite(target), target, self.limiter.position)  # overflowing gains
        dt = 1.0 / FPS if self._t is None else min(t - self._t, MAX_DT)
        smoothed = self.filter(target, t) if self.filter is not None else target
        if self._smoothed is not None:  # velocity of the smoothed targets, low-passed
            alpha = 1.0 / (1.0 + 1.0 / (2.0 * np.pi * self._d_cutoff * dt))
            self._rate += alpha * ((smoothed - self._smoothed) / dt - self._rate)
        self._smoothed = smoothed
        goal = smoothed + self._rate * self.lead_s
        v0 = self.limiter.velocity.copy()
        position = self.limiter.step(goal, dt)
        self._t = t
        self.frames += 1
        return JointCommand(list(self.names), position, self.limiter.velocity.copy(),
                            (self.limiter.velocity - v0) / dt, t)
