"""Head driver (issue 11 item 5): FLAME frames -> joint commands within every limit.

* property-style: random, extreme (1e30, huge jumps) and malformed (NaN, inf, wrong lengths,
  time going backwards) frames, many seeds: positions, velocities and accelerations never
  exceed the configured limits; malformed frames are dropped and logged;
* a step target is reached without overshoot; the latency lead runs ahead of a ramp;
* Euler angles of the channels against scipy; the example configuration loads; bad
  configurations are refused with ConfigError;
* the node under real rclpy publishes JointState (and JointTrajectory) for FlameParams in,
  and nothing for a NaN frame.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from rsatalker_core.errors import ConfigError
from rsatalker_core.robot.head_config import head_driver_config_from_dict, load_head_driver_config
from rsatalker_core.robot.head_driver import MAX_DT, HeadDriver
from rsatalker_core.robot.head_mapping import flame_channels, rotvec_to_euler_yxz

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "head_driver_example.yaml"


def _random_frame(rng: np.random.Generator, k: int):
    """A frame of one of many kinds, and whether it is well-formed."""
    kind = rng.integers(0, 10)
    m, e = rng.normal(0, 0.3, 56), rng.normal(0, 0.2, 6)
    if kind == 0:
        return np.full(56, rng.choice([1e30, -1e30])), np.full(6, 1e30), True
    if kind == 1:  # a huge jump in some channels
        m[rng.integers(0, 56, 5)] = rng.choice([-1, 1]) * 10.0 ** rng.integers(2, 25)
        return m, e, True
    if kind == 2:
        m[rng.integers(0, 56)] = np.nan
        return m, e, False
    if kind == 3:
        e[rng.integers(0, 6)] = np.inf
        return m, e, False
    if kind == 4:
        return rng.normal(0, 1, int(rng.choice([0, 53, 55, 57, 100]))), e, False
    if kind == 5:
        return m, rng.normal(0, 1, int(rng.choice([0, 3, 7]))), False
    if kind == 6:
        return ["a"] * 56, e, False
    return m, e, True


@pytest.mark.parametrize("seed", range(12))
def test_limits_are_never_exceeded_whatever_comes_in(seed, caplog):
    cfg = load_head_driver_config(str(EXAMPLE))
    rng = np.random.default_rng(seed)
    if seed % 3 == 1:
        cfg.smoothing.method = "none"
    cfg.lead_ms = float(rng.choice([0.0, 60.0, 500.0]))
    d = HeadDriver(cfg)
    p_min, p_max = d.p_min, d.p_max
    v_max = np.array([j.max_velocity for j in cfg.joints])
    a_max = np.array([j.max_acceleration for j in cfg.joints])
    p_prev = np.array([j.start for j in cfg.joints])
    v_prev = np.zeros_like(p_prev)
    t, t_last, accepted, expected_drops = 0.0, None, 0, 0
    caplog.set_level(logging.DEBUG, logger="rsatalker_core.robot.head_driver")
    for k in range(400):
        t += float(rng.choice([0.04, 0.04, 1e-6, 0.001, 0.2, 3.0, -0.05, 0.0]))
        m, e, ok = _random_frame(rng, k)
        in_order = t_last is None or t > t_last
        cmd = d.step(m, e, t)
        if not (ok and in_order):
            assert cmd is None
            expected_drops += 1
            continue
        assert cmd is not None
        dt = 1.0 / 25 if t_last is None else min(t - t_last, MAX_DT)
        t_last = t
        accepted += 1
        p = cmd.position
        assert np.all(np.isfinite(p)) and np.all(np.isfinite(cmd.velocity))
        assert np.all(p >= p_min - 1e-12) and np.all(p <= p_max + 1e-12)
        v = (p - p_prev) / dt
        acc = (v - v_prev) / dt
        tol = 1e-6
        assert np.all(np.abs(v) <= v_max * (1 + tol) + 1e-9), (k, v, v_max)
        assert np.all(np.abs(acc) <= a_max * (1 + tol) + 1e-6 / dt), (k, acc, a_max)
        np.testing.assert_allclose(cmd.velocity, v, rtol=1e-9, atol=1e-9)
        assert np.all(np.abs(cmd.acceleration) <= a_max * (1 + tol) + 1e-6 / dt)
        p_prev, v_prev = p, v
    assert accepted > 100 and d.dropped == expected_drops > 50
    drops = [r for r in caplog.records if "frame dropped" in r.getMessage()]
    assert len(drops) == expected_drops


def _one_joint(**kw):
    joint = {"name": "neck_yaw", "map": {"head.yaw": 1.0}, "min_position": -1.0, "max_position": 1.0,
             "max_velocity": 2.0, "max_acceleration": 10.0}
    joint.update(kw.pop("joint", {}))
    data = {"joints": [joint], "smoothing": {"method": "none"}}
    data.update(kw)
    return head_driver_config_from_dict(data)


def _yaw_frame(yaw: float):
    m = np.zeros(56)
    m[53:56] = [0.0, yaw, 0.0]
    return m, np.zeros(6)


def test_step_target_is_reached_without_overshoot_and_limits_shape_the_move():
    d = HeadDriver(_one_joint())
    out = [float(d.step(*_yaw_frame(0.8), t=k * 0.04).position[0]) for k in range(60)]
    assert max(out) <= 0.8 + 1e-9 and abs(out[-1] - 0.8) < 1e-6
    # the move takes at least the time the limits allow: 0.8 rad at 2 rad/s, 10 rad/s^2
    reached = next(k for k, p in enumerate(out) if abs(p - 0.8) < 1e-6)
    assert (reached + 1) * 0.04 >= 0.8 / 2.0
    # a target beyond the limit stops at the limit
    d2 = HeadDriver(_one_joint())
    assert max(float(d2.step(*_yaw_frame(3.0), t=k * 0.04).position[0]) for k in range(80)) == pytest.approx(1.0)


def test_latency_lead_runs_ahead_of_a_ramp():
    fast = {"max_velocity": 50.0, "max_acceleration": 1000.0}
    plain = HeadDriver(_one_joint(joint=fast))
    lead = HeadDriver(_one_joint(joint=fast, lead_ms=100.0))
    for k in range(50):
        yaw = 0.01 * k  # 0.25 rad/s
        a = plain.step(*_yaw_frame(yaw), t=k * 0.04).position[0]
        b = lead.step(*_yaw_frame(yaw), t=k * 0.04).position[0]
    # 100 ms ahead along 0.25 rad/s: 0.025 rad (the velocity estimate is low-passed)
    assert 0.015 < b - a < 0.03, (a, b)


def test_channels_are_yxz_euler_angles_of_flame_rotations():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    v = rng.normal(0, 0.4, (20, 3))
    np.testing.assert_allclose(rotvec_to_euler_yxz(v), Rotation.from_rotvec(v).as_euler("YXZ"), atol=1e-9)
    m = np.zeros(56)
    m[50:53] = [0.2, 0.0, 0.0]  # jaw opens about x
    m[53:56] = [0.0, 0.3, 0.0]  # head turns about y
    m[7] = 1.5
    ch = flame_channels(m, np.array([0.0, 0.1, 0.0, 0.0, 0.3, 0.0]))
    assert ch["jaw.pitch"] == pytest.approx(0.2) and ch["head.yaw"] == pytest.approx(0.3)
    assert ch["eyes.yaw"] == pytest.approx(0.2) and ch["eye_right.yaw"] == pytest.approx(0.3)
    assert ch["expression.7"] == 1.5 and ch["head.pitch"] == pytest.approx(0.0, abs=1e-12)


def test_example_configuration_drives_a_generic_expressive_head():
    cfg = load_head_driver_config(str(EXAMPLE))
    names = [j.name for j in cfg.joints]
    for part in ("neck_yaw", "neck_pitch", "neck_roll", "jaw", "eyes_pan", "eyes_tilt", "eyelid_left",
                 "brow_left", "lip_corner_left"):
        assert part in names
    d = HeadDriver(cfg)
    m = np.zeros(56)
    m[50] = 0.2  # jaw open
    m[12] = 1.0  # eyelids shut
    for k in range(50):
        cmd = d.step(m, np.zeros(6), k * 0.04)
    pos = dict(zip(cmd.names, cmd.position))
    assert pos["jaw"] == pytest.approx(0.3, abs=1e-3) and pos["eyelid_left"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("bad, match", [
    ({"joints": []}, "no joint"),
    ({"joints": [{"name": "a", "map": {"head.twist": 1.0}}]}, "unknown channel"),
    ({"joints": [{"name": "a", "map": {"expression.50": 1.0}}]}, "unknown channel"),
    ({"joints": [{"name": "a", "min_position": 1.0, "max_position": -1.0}]}, "min_position"),
    ({"joints": [{"name": "a", "max_velocity": 0.0}]}, "max_velocity"),
    ({"joints": [{"name": "a", "map": {"head.yaw": float("nan")}}]}, "finite"),
    ({"joints": [{"name": "a"}, {"name": "a"}]}, "twice"),
    ({"joints": [{"name": "a"}], "lead_ms": 900.0}, "lead_ms"),
    ({"joints": [{"name": "a"}], "smoothing": {"method": "kalman"}}, "smoothing"),
    ({"joints": [{"name": "a", "speed": 1.0}]}, "unknown config key"),
    ({"joints": [{"name": "a"}], "output": "servo"}, "output"),
])
def test_bad_configuration_is_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        head_driver_config_from_dict(bad)


def test_missing_configuration_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_head_driver_config(str(tmp_path / "nope.yaml"))


# --------------------------------------------------------------------------- ROS


def test_node_publishes_joint_states_for_flame_params():
    pytest.importorskip("rclpy")
    pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    import rclpy
    from rsatalker.msg import FlameParams
    from rsatalker_core.io import session_topics as st
    from rsatalker_ros import topics
    from rsatalker_ros.conversions import array_to_flame_params
    from rsatalker_ros.nodes.head_driver import HeadDriverNode
    from rsatalker_ros.testing import isolated_context

    ctx = isolated_context()
    try:
        node = HeadDriverNode(context=ctx, parameter_overrides=[Parameter("head_config", value=str(EXAMPLE))])
        probe = Node("probe", context=ctx)
        states, trajs = [], []
        probe.create_subscription(JointState, st.HEAD_JOINT_STATES.name, states.append, 10)
        probe.create_subscription(JointTrajectory, st.HEAD_JOINT_TRAJECTORY.name, trajs.append, 10)
        pub = probe.create_publisher(FlameParams, st.AVATAR_FLAME.name, topics.publisher_qos(st.AVATAR_FLAME))
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(probe)

        def spin_until(pred, timeout=10.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end and not pred():
                ex.spin_once(timeout_sec=0.02)
            return pred()

        assert spin_until(lambda: pub.get_subscription_count() > 0)
        m = np.zeros(56, np.float32)
        m[53:56] = [0.0, 0.4, 0.0]
        for k in range(10):
            pub.publish(array_to_flame_params(m, stamp_ns=10**18 + k * 40_000_000, frame_index=k))
            spin_until(lambda: len(states) > k and len(trajs) > k, 5.0)
            time.sleep(0.04)
        assert len(states) == 10 and len(trajs) == 10
        names = [j.name for j in load_head_driver_config(str(EXAMPLE)).joints]
        assert list(states[-1].name) == names and list(trajs[-1].joint_names) == names
        yaw = [s.position[names.index("neck_yaw")] for s in states]
        assert 0.0 < yaw[-1] <= 0.4 + 1e-6 and yaw == sorted(yaw)  # moving towards 0.4 rad (float32 in)
        assert trajs[-1].points[0].time_from_start.nanosec == 80_000_000
        bad = array_to_flame_params(m, stamp_ns=10**18, frame_index=99)
        bad.expression = [float("nan")] * 50
        pub.publish(bad)
        short = array_to_flame_params(m, stamp_ns=10**18, frame_index=100)
        short.expression = [0.0] * 10
        pub.publish(short)
        assert spin_until(lambda: node.driver.dropped == 2, 5.0)
        assert len(states) == 10  # nothing published for them
        node.destroy_node()
        probe.destroy_node()
        ex.shutdown()
    finally:
        rclpy.try_shutdown(context=ctx)
