"""One-Euro filter for tracked parameters (Casiez, Roussel and Vogel, CHI 2012).

A first-order low-pass filter whose cutoff rises with the signal's speed: still parameters
are smoothed strongly (jitter removed), fast ones lightly (little lag).
``cutoff = min_cutoff + beta * |dx/dt|`` (Hz), with the derivative itself low-passed at
``d_cutoff`` Hz; smoothing factor ``alpha = 1 / (1 + 1 / (2 pi cutoff dt))``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["OneEuroFilter"]


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over a vector of channels (module docstring).

    Args:
        min_cutoff: cutoff at rest, Hz (> 0; lower = smoother).
        beta: cutoff increase per unit of speed (units of the signal per second; 0 = a
            plain low-pass filter).
        d_cutoff: cutoff of the derivative's low-pass filter, Hz.

    Raises:
        ValueError: non-positive cutoffs or a negative beta.
    """

    def __init__(self, min_cutoff: float = 1.5, beta: float = 0.5, d_cutoff: float = 1.0):
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
            raise ValueError(f"One-Euro filter needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"{min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the history (the next sample passes unchanged)."""
        self._x: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None
        self._t: Optional[float] = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x [C]`` taken at time ``t`` seconds; returns the filtered ``[C]``.

        A sample not later than the previous one is returned as the previous output.
        """
        x = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0:
            return self._x.copy()
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(np.full_like(x, self.d_cutoff), dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = float(t)
        return self._x.copy()
