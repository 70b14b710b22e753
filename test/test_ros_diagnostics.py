"""Diagnostics under real rclpy (issue 11.7; docs/ros.md "Diagnostics").

The motion, render and face-tracker nodes publish ``diagnostic_msgs/DiagnosticArray`` on
``/diagnostics`` about once a second (diagnostic_updater's topic and naming), with the rate,
latency, drops and device from their own counters. Fed at 25 Hz in real time, the motion
node reports ~25 Hz and a positive latency below a few seconds; a rejected (NaN) chunk
turns its status to WARN with the drop counted; the render node reports its image rate;
the face tracker without images reports 0 Hz and no latency.
"""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
pytest.importorskip("diagnostic_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from rsatalker.msg import AudioChunk, FlameParams  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import array_to_audio_chunk, array_to_flame_params  # noqa: E402
from rsatalker_ros.testing import REPO, RosHarness, free_domain_id  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"
KEYS = {"rate_hz", "latency_ms", "dropped", "dropped_last_period", "device", "published"}


def _statuses(arrays, name):
    """(receive time, level, message, {key: value}) of every status called ``name``."""
    return [(t, s.level, s.message, {kv.key: kv.value for kv in s.values})
            for t, a in arrays for s in a.status if s.name == name]


def _listen(h):
    arrays = []
    h.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: arrays.append((time.monotonic(), m)), 10)
    return arrays


def test_motion_node_reports_rate_latency_drops_and_device():
    from rsatalker_ros.nodes.motion_node import MotionNode

    with RosHarness(free_domain_id()) as h:
        arrays = _listen(h)
        audio_pub = h.node.create_publisher(AudioChunk, topics.AUDIO_SELF, topics.AUDIO_PUB_QOS)
        node = MotionNode(context=h.context, parameter_overrides=[Parameter("config_file", value=str(SMALL_CONFIG))])
        h.executor.add_node(node)
        try:
            assert h.spin_until(lambda: bool(h.node.get_subscriptions_info_by_topic("/audio/self")), 10.0)
            sr, n = 16000, 640
            t_wall0 = time.monotonic()
            k = 0

            def feed_until(t_end: float) -> None:  # 40-ms chunks in real time
                nonlocal k
                while time.monotonic() < t_end:
                    x = (0.3 * np.sin(2 * np.pi * 190 * (np.arange(n) + k * n) / sr)).astype(np.float32)
                    audio_pub.publish(array_to_audio_chunk(x, sr, stamp_ns=node.get_clock().now().nanoseconds))
                    k += 1
                    h.spin_until(lambda: False, max(0.0, t_wall0 + k * 0.04 - time.monotonic()))

            feed_until(time.monotonic() + 6.0)
            got = _statuses(arrays, "motion_node: motion")
            assert len(got) >= 4, len(got)
            times = [t for t, *_ in got]
            assert 0.7 < np.median(np.diff(times)) < 1.3  # about once a second
            t, level, message, kv = got[-1]
            assert KEYS <= set(kv), kv
            assert kv["device"] == "cpu"
            assert {"frames_dropped", "inputs_dropped", "messages_rejected", "relationship"} <= set(kv)
            # steady state, fed at 25 Hz in real time: the published rate is the input rate
            rates = [float(v["rate_hz"]) for *_, v in got[-3:]]
            assert all(15.0 < r < 35.0 for r in rates), rates
            assert 0.0 < float(kv["latency_ms"]) < 5000.0, kv["latency_ms"]
            assert int(kv["published"]) > 50 and int(kv["messages_rejected"]) == 0
            assert level == DiagnosticStatus.OK and "Hz" in message

            # a rejected chunk (NaN): counted, and the next report warns
            bad = AudioChunk(sample_rate=sr, role="self")
            bad.samples = [float("nan")] * n
            audio_pub.publish(bad)
            n_before = len(got)
            feed_until(time.monotonic() + 2.5)
            later = _statuses(arrays, "motion_node: motion")[n_before:]
            assert any(lv == DiagnosticStatus.WARN and int(v["messages_rejected"]) == 1
                       and int(v["dropped_last_period"]) >= 1 for _, lv, _, v in later), later
        finally:
            h.executor.remove_node(node)
            node.destroy_node()


def test_render_and_face_tracker_report():
    from rsatalker_ros.nodes.render_node import RenderNode

    with RosHarness(free_domain_id()) as h:
        arrays = _listen(h)
        flame_pub = h.node.create_publisher(FlameParams, topics.AVATAR_FLAME, topics.FLAME_PUB_QOS)
        render = RenderNode(context=h.context, parameter_overrides=[Parameter("config_file", value=str(SMALL_CONFIG))])
        h.executor.add_node(render)
        tracker = None
        try:
            pytest.importorskip("mediapipe")
            from rsatalker_ros.nodes.face_tracker import FaceTrackerNode

            tracker = FaceTrackerNode(context=h.context)
            h.executor.add_node(tracker)
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < 4.5:
                m = np.zeros(56, np.float32)
                m[50] = 0.2 * np.sin(i / 3)
                flame_pub.publish(array_to_flame_params(m, stamp_ns=render.get_clock().now().nanoseconds,
                                                        frame_index=i))
                i += 1
                h.spin_until(lambda: False, max(0.0, t0 + i * 0.04 - time.monotonic()))
            got = _statuses(arrays, "render_node: render")
            assert len(got) >= 3, len(got)
            _, level, _, kv = got[-1]
            assert KEYS | {"frames_skipped", "render_ms"} <= set(kv), kv
            assert kv["device"] == "cpu" and float(kv["rate_hz"]) > 1.0
            assert 0.0 <= float(kv["latency_ms"]) < 5000.0 and float(kv["render_ms"]) > 0.0
            assert 3 <= int(kv["published"]) <= render.frames_rendered

            track = _statuses(arrays, "face_tracker: face tracking")
            assert len(track) >= 3
            _, level, _, kv = track[-1]
            assert KEYS | {"face", "frames_rejected"} <= set(kv), kv
            assert level == DiagnosticStatus.OK
            assert kv["device"] == "cpu" and float(kv["rate_hz"]) == 0.0 and kv["latency_ms"] == "nan"
            assert kv["face"] == "false" and int(kv["published"]) == 0
        finally:
            for node in (tracker, render):
                if node is not None:
                    h.executor.remove_node(node)
                    node.destroy_node()
