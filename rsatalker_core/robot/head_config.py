"""Configuration of the head driver: joints, linear maps, limits, smoothing, latency lead.

Loaded from YAML (``config/head_driver_example.yaml`` is a generic expressive head) into
dataclasses, like :func:`rsatalker_core.config.load_config`: unknown keys, wrong types and
inconsistent values are refused with a :class:`~rsatalker_core.errors.ConfigError` naming
the key. Layout::

    lead_ms: 60.0            # extrapolate the smoothed motion this far ahead (ms)
    trajectory_time_s: 0.08  # JointTrajectory point time_from_start (s)
    output: both             # joint_state, trajectory or both
    smoothing: {method: one_euro, min_cutoff_hz: 2.0, beta: 0.5, d_cutoff_hz: 1.0}
    joints:
      - name: neck_yaw
        map: {head.yaw: 1.0}          # position = offset + sum(gain * channel)
        offset: 0.0
        min_position: -1.2            # joint units (radians for revolute joints)
        max_position: 1.2
        max_velocity: 3.0             # units/s
        max_acceleration: 20.0        # units/s^2

Channels are listed in :data:`rsatalker_core.robot.head_mapping.CHANNEL_DOC`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


from rsatalker_core.config import from_dict, read_yaml_mapping
from rsatalker_core.errors import ConfigError

__all__ = ["SmoothingConfig", "JointConfig", "HeadDriverConfig", "head_driver_config_from_dict",
           "load_head_driver_config", "SMOOTHING_METHODS", "MAX_LEAD_MS"]

#: ``none`` passes targets through; ``one_euro`` is the One-Euro filter (Casiez et al. 2012).
SMOOTHING_METHODS = ("none", "one_euro")
#: Longest latency lead accepted, ms (extrapolating further only amplifies noise).
MAX_LEAD_MS = 500.0


@dataclass
class SmoothingConfig:
    """Smoothing of the joint targets before the limits.

    Attributes:
        method: ``one_euro`` or ``none``.
        min_cutoff_hz: One-Euro cutoff at rest, Hz (> 0; lower = smoother).
        beta: cutoff increase per unit/s of joint speed (>= 0).
        d_cutoff_hz: cutoff of the speed estimate, Hz (> 0); also used for the lead.
    """

    method: str = "one_euro"
    min_cutoff_hz: float = 2.0
    beta: float = 0.5
    d_cutoff_hz: float = 1.0


@dataclass
class JointConfig:
    """One joint of the head.

    Attributes:
        name: joint name as the robot's URDF / controller knows it.
        map: channel name -> gain; the target is ``offset + sum(gain * channel)``.
        offset: target when every channel is 0 (joint units).
        min_position / max_position: position limits (joint units; radians for revolute).
        max_velocity: > 0, units/s.
        max_acceleration: > 0, units/s^2.
        initial_position: where the joint is assumed to start (at rest); ``None`` = the
            offset clamped to the limits.
    """

    name: str = ""
    map: Dict[str, float] = field(default_factory=dict)
    offset: float = 0.0
    min_position: float = -1.0
    max_position: float = 1.0
    max_velocity: float = 1.0
    max_acceleration: float = 10.0
    initial_position: Optional[float] = None

    @property
    def start(self) -> float:
        """The initial position, inside the limits."""
        p = self.offset if self.initial_position is None else self.initial_position
        return min(max(float(p), self.min_position), self.max_position)


@dataclass
class HeadDriverConfig:
    """The head driver's configuration (module docstring).

    Attributes:
        joints: the joints, in output order.
        smoothing: :class:`SmoothingConfig`.
        lead_ms: latency lead: targets extrapolated this far ahead along their smoothed
            velocity, ms (0 .. :data:`MAX_LEAD_MS`), to hide the robot's actuation delay.
        trajectory_time_s: ``time_from_start`` of the single JointTrajectory point, s (> 0).
        output: ``joint_state``, ``trajectory`` or ``both``.
    """

    joints: List[JointConfig] = field(default_factory=list)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    lead_ms: float = 0.0
    trajectory_time_s: float = 0.08
    output: str = "both"


OUTPUTS = ("joint_state", "trajectory", "both")


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"head driver: '{name}' must be a finite number, got {value!r}")
    return float(value)


def head_driver_config_from_dict(data: Optional[Dict[str, Any]], where: str = "") -> HeadDriverConfig:
    """Build and validate a :class:`HeadDriverConfig` from a mapping (parsed YAML).

    Raises:
        ConfigError: unknown keys, wrong types, no joints, duplicate joint names, unknown
            channels, limits with ``min_position > max_position``, non-positive velocity or
            acceleration limits, a lead outside ``[0, MAX_LEAD_MS]``, an unknown smoothing
            method or output.
    """
    from rsatalker_core.robot.head_mapping import check_channel

    data = dict(data or {})
    if not isinstance(data.get("joints", []), list):
        raise ConfigError(f"head driver: '{where}joints' must be a list of joints")
    joints_raw = data.pop("joints", [])
    cfg = from_dict(HeadDriverConfig, data, where)
    if not joints_raw:
        raise ConfigError(f"head driver: '{where}joints' lists no joint")
    names = set()
    for i, raw in enumerate(joints_raw):
        key = f"{where}joints[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"head driver: '{key}' must be a mapping")
        raw = dict(raw)
        initial = raw.pop("initial_position", None)
        j = from_dict(JointConfig, raw, key + ".")
        if not j.name or not isinstance(j.name, str):
            raise ConfigError(f"head driver: '{key}.name' must be a non-empty string")
        if j.name in names:
            raise ConfigError(f"head driver: joint '{j.name}' is listed twice")
        names.add(j.name)
        if not isinstance(j.map, dict):
            raise ConfigError(f"head driver: '{key}.map' must map channel names to gains")
        j.map = {str(ch): _finite(g, f"{key}.map.{ch}") for ch, g in j.map.items()}
        for ch in j.map:
            check_channel(ch, f"{key}.map")
        for attr in ("offset", "min_position", "max_position", "max_velocity", "max_acceleration"):
            setattr(j, attr, _finite(getattr(j, attr), f"{key}.{attr}"))
        if j.min_position > j.max_position:
            raise ConfigError(f"head driver: '{key}': min_position {j.min_position} > max_position {j.max_position}")
        if j.max_velocity <= 0 or j.max_acceleration <= 0:
            raise ConfigError(f"head driver: '{key}': max_velocity and max_acceleration must be > 0")
        j.initial_position = None if initial is None else _finite(initial, f"{key}.initial_position")
        cfg.joints.append(j)
    cfg.lead_ms = _finite(cfg.lead_ms, f"{where}lead_ms")
    if not 0.0 <= cfg.lead_ms <= MAX_LEAD_MS:
        raise ConfigError(f"head driver: '{where}lead_ms' must be in [0, {MAX_LEAD_MS:g}], got {cfg.lead_ms}")
    if not _finite(cfg.trajectory_time_s, f"{where}trajectory_time_s") > 0:
        raise ConfigError(f"head driver: '{where}trajectory_time_s' must be > 0")
    if cfg.output not in OUTPUTS:
        raise ConfigError(f"head driver: '{where}output' must be one of {', '.join(OUTPUTS)}, got {cfg.output!r}")
    s = cfg.smoothing
    if s.method not in SMOOTHING_METHODS:
        raise ConfigError(f"head driver: '{where}smoothing.method' must be one of {', '.join(SMOOTHING_METHODS)}")
    if not (_finite(s.min_cutoff_hz, "smoothing.min_cutoff_hz") > 0 and _finite(s.d_cutoff_hz, "smoothing.d_cutoff_hz") > 0
            and _finite(s.beta, "smoothing.beta") >= 0):
        raise ConfigError(f"head driver: '{where}smoothing' needs min_cutoff_hz > 0, d_cutoff_hz > 0, beta >= 0")
    return cfg


def load_head_driver_config(path: str) -> HeadDriverConfig:
    """Load a head driver configuration from a YAML file; a top-level ``head_driver:`` key
    is accepted as a wrapper.

    Raises:
        ConfigError: missing file, malformed YAML, or an invalid configuration
            (:func:`head_driver_config_from_dict`).
    """
    data = read_yaml_mapping(path, "head driver config")
    if set(data) == {"head_driver"}:
        data = data["head_driver"]
    try:
        return head_driver_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
