"""Position, velocity and acceleration limits that a commanded joint never exceeds.

Each step moves every joint from its state ``(p, v)`` towards a target ``x`` over ``dt``
seconds with a new velocity ``u`` and position ``p + u dt``, where ``u`` lies in three
intervals at once:

* velocity: ``|u| <= v_max``;
* acceleration: ``|u - v| <= a_max dt``;
* braking: the joint can still stop inside ``[p_min, p_max]`` decelerating at ``a_max``:
  ``u dt + u^2 / (2 a_max) <= d`` for the distance ``d`` to the limit ahead, i.e.
  ``u <= -a_max dt + sqrt(a_max^2 dt^2 + 2 a_max d)``.

The three always intersect (each pair does: ``0`` is in the velocity and braking intervals,
and if the braking bound held at the previous step, ``u = v - a_max dt`` satisfies it now), so
the limits hold together at every step, for any target, any ``dt`` and any history. Within
them, ``u`` heads for the target at the speed from which it can still stop there
(``sign(e) min(|e| / dt, -a dt + sqrt(a^2 dt^2 + 2 a |e|))``), so a step target is
reached without overshoot.
"""

from __future__ import annotations

import numpy as np

__all__ = ["JointLimiter"]


def _stop_speed(distance: np.ndarray, a: np.ndarray, dt: float) -> np.ndarray:
    """Largest speed ``u >= 0`` with ``u dt + u^2 / (2 a) <= distance`` (``distance >= 0``)."""
    d = np.maximum(distance, 0.0)
    return np.maximum(-a * dt + np.sqrt((a * dt) ** 2 + 2.0 * a * d), 0.0)


class JointLimiter:
    """Rate and range limiting of ``J`` joints (module docstring).

    Args:
        p_min, p_max: ``[J]`` position limits (joint units), ``p_min <= p_max``.
        v_max: ``[J]`` > 0, units/s.
        a_max: ``[J]`` > 0, units/s^2.
        start: ``[J]`` initial positions, inside the limits; the joints start at rest.
    """

    def __init__(self, p_min, p_max, v_max, a_max, start):
        self.p_min = np.asarray(p_min, np.float64)
        self.p_max = np.asarray(p_max, np.float64)
        self.v_max = np.asarray(v_max, np.float64)
        self.a_max = np.asarray(a_max, np.float64)
        self.position = np.clip(np.asarray(start, np.float64), self.p_min, self.p_max)
        self.velocity = np.zeros_like(self.position)

    def step(self, target: np.ndarray, dt: float) -> np.ndarray:
        """Move towards ``target [J]`` over ``dt`` s (> 0); returns the new positions ``[J]``.

        Non-finite targets hold the joint's current position as target.
        """
        p, v, a = self.position, self.velocity, self.a_max
        x = np.where(np.isfinite(target), target, p)
        x = np.clip(x, self.p_min, self.p_max)
        e = x - p
        u = np.sign(e) * np.minimum(np.abs(e) / dt, _stop_speed(np.abs(e), a, dt))
        lo = np.maximum.reduce([-self.v_max, v - a * dt, -_stop_speed(p - self.p_min, a, dt)])
        hi = np.minimum.reduce([self.v_max, v + a * dt, _stop_speed(self.p_max - p, a, dt)])
        hi = np.maximum(hi, lo)  # guards rounding only: the intervals intersect (docstring)
        u = np.clip(u, lo, hi)
        new = np.clip(p + u * dt, self.p_min, self.p_max)
        self.velocity = (new - p) / dt
        self.position = new
        return new.copy()
