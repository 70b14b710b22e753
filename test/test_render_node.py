"""Render node under load (in-process rclpy): stale FLAME frames are dropped and counted, the
newest is rendered, and the render thread keeps to ``max_busy_fraction`` of the wall time."""

import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import array_to_flame_params, time_to_ns  # noqa: E402
from rsatalker_ros.nodes.render_node import RenderNode  # noqa: E402
from rsatalker_ros.testing import REPO, RosHarness, free_domain_id  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"


def _msg(i):
    motion = np.zeros(56, np.float32)
    motion[50] = 0.01 * (i % 20)  # the jaw moves
    return array_to_flame_params(motion, stamp_ns=i * 40_000_000, frame_index=i)


def _node(h, busy, nice=0):
    return RenderNode(context=h.context, parameter_overrides=[
        Parameter("config_file", value=str(SMALL_CONFIG)),
        Parameter("max_fps", value=0.0),
        Parameter("max_busy_fraction", value=busy),
        Parameter("thread_nice", value=nice),  # the busy share in wall time, not CPU priority
    ])


def test_burst_renders_the_newest_frame_and_counts_drops():
    with RosHarness(free_domain_id()) as h:
        stamps = []
        h.node.create_subscription(Image, topics.AVATAR_IMAGE, lambda m: stamps.append(time_to_ns(m.header.stamp)),
                                   topics.IMAGE_QOS)
        node = _node(h, 1.0)
        try:
            node.renderer.render(np.zeros((1, 56), np.float32))  # warm up
            for i in range(20):  # a burst far faster than any renderer
                node._on_flame(_msg(i))
            assert h.spin_until(lambda: bool(stamps) and stamps[-1] == 19 * 40_000_000, 30.0), stamps
            h.spin_for(0.3)
            assert node.frames_rendered + node.frames_skipped == 20
            assert node.frames_rendered <= 3 and node.frames_skipped >= 17
            assert stamps and stamps[-1] == 19 * 40_000_000  # the newest frame was rendered last
        finally:
            node.destroy_node()


def _busy_share(h, busy, seconds=2.0):
    node = _node(h, busy)
    try:
        node.renderer.render(np.zeros((1, 56), np.float32))
        durations = []
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:  # frames arrive faster than they render
            node._on_flame(_msg(i))
            i += 1
            time.sleep(0.002)
            # the bound is on the render thread's CPU time (a wait for the GIL is not busy)
            if node._last_cpu and (not durations or durations[-1] != node._last_cpu):
                durations.append(node._last_cpu)
        rendered = node.frames_rendered
        return rendered * float(np.median(durations)) / seconds, node.frames_skipped
    finally:
        node.destroy_node()


def test_render_thread_keeps_to_its_busy_fraction():
    with RosHarness(free_domain_id()) as h:
        bounded, dropped = _busy_share(h, 0.25)
        unbounded, _ = _busy_share(h, 1.0)
    assert dropped > 0
    assert bounded < 0.4, bounded
    assert unbounded > 1.8 * bounded, (bounded, unbounded)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is a POSIX/Linux feature")
def test_render_thread_runs_nicer_than_the_process():
    with RosHarness(free_domain_id()) as h:
        node = _node(h, 1.0, nice=7)
        try:
            assert h.spin_until(lambda: node._worker.native_id is not None, 5.0)
            time.sleep(0.2)  # the thread lowers its own priority as it starts
            base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            assert os.getpriority(os.PRIO_PROCESS, node._worker.native_id) == min(19, base + 7)
        finally:
            node.destroy_node()
