"""Lifecycle (managed) nodes under real rclpy (issue 11.7; docs/ros.md "Lifecycle").

The motion, render and face-tracker nodes start unconfigured with ``autostart`` false:

* unconfigured: no model loaded, none of the node's topics in the graph;
* configure -> inactive: the model is loaded (through the ``~/change_state`` service, as
  launch_ros and ``ros2 lifecycle set`` drive it), still no publisher or subscription, and
  nothing is published although input arrives;
* activate -> active: the topics appear and output flows;
* deactivate -> inactive: the topics are gone and nothing is published; activate again works;
  cleanup releases the model; a failed configure (bad device) stays unconfigured and says why.
"""

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
pytest.importorskip("lifecycle_msgs.srv")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from rsatalker.msg import AudioChunk, FlameParams  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import array_to_audio_chunk, array_to_flame_params  # noqa: E402
from rsatalker_ros.testing import REPO, RosHarness, free_domain_id  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"


def _change(h, node_name: str, transition_id: int) -> bool:
    """Request a transition through the node's ~/change_state service; True on success."""
    cli = h.node.create_client(ChangeState, f"/{node_name}/change_state")
    try:
        assert cli.wait_for_service(timeout_sec=10.0), f"/{node_name}/change_state not offered"
        fut = cli.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        assert h.spin_until(fut.done, 60.0), "no answer from change_state"
        return fut.result().success
    finally:
        h.node.destroy_client(cli)


def _state(h, node_name: str) -> str:
    cli = h.node.create_client(GetState, f"/{node_name}/get_state")
    try:
        assert cli.wait_for_service(timeout_sec=10.0)
        fut = cli.call_async(GetState.Request())
        assert h.spin_until(fut.done, 10.0)
        return fut.result().current_state.label
    finally:
        h.node.destroy_client(cli)


def _topic_users(h, topic: str):
    return len(h.node.get_publishers_info_by_topic(topic)), len(h.node.get_subscriptions_info_by_topic(topic))


def _audio(k: int) -> AudioChunk:
    n, sr = 640, 16000
    x = (0.3 * np.sin(2 * np.pi * 200 * (np.arange(n) + k * n) / sr)).astype(np.float32)
    return array_to_audio_chunk(x, sr, stamp_ns=5_000_000_000 + k * 40_000_000)


def test_motion_node_transitions_and_publishes_only_while_active():
    from rsatalker_ros.nodes.motion_node import MotionNode

    with RosHarness(free_domain_id()) as h:
        flames = []
        h.node.create_subscription(FlameParams, "avatar/flame_params", flames.append, topics.FLAME_SUB_QOS)
        audio_pub = h.node.create_publisher(AudioChunk, topics.AUDIO_SELF, topics.AUDIO_PUB_QOS)
        node = MotionNode(context=h.context, parameter_overrides=[
            Parameter("config_file", value=str(SMALL_CONFIG)), Parameter("autostart", value=False)])
        h.executor.add_node(node)
        k = 0

        def feed(seconds: float) -> None:
            nonlocal k
            for _ in range(int(seconds * 25)):
                audio_pub.publish(_audio(k))
                k += 1
                h.spin_for(0.04)

        try:
            # unconfigured: no model, no topics (the test's own publisher/subscription only)
            assert _state(h, "motion_node") == "unconfigured" and node.lifecycle_state == "unconfigured"
            assert node._gen is None
            h.spin_for(0.5)
            assert _topic_users(h, "/avatar/flame_params") == (0, 1)
            assert _topic_users(h, "/audio/self") == (1, 0)

            # configure -> inactive: model loaded, still no topics; input is not heard
            assert _change(h, "motion_node", Transition.TRANSITION_CONFIGURE)
            assert _state(h, "motion_node") == "inactive" and node._gen is not None
            feed(1.0)
            assert _topic_users(h, "/avatar/flame_params") == (0, 1) and _topic_users(h, "/audio/self") == (1, 0)
            assert flames == []

            # activate -> active: topics appear, frames flow
            assert _change(h, "motion_node", Transition.TRANSITION_ACTIVATE)
            assert _state(h, "motion_node") == "active"
            assert h.spin_until(lambda: _topic_users(h, "/audio/self") == (1, 1), 10.0)
            for _ in range(10):
                feed(1.0)
                if len(flames) >= 10:
                    break
            assert len(flames) >= 10

            # deactivate -> inactive: topics gone, nothing more published while audio keeps coming
            assert _change(h, "motion_node", Transition.TRANSITION_DEACTIVATE)
            assert _state(h, "motion_node") == "inactive"
            h.spin_for(0.5)
            n_before = len(flames)
            feed(1.0)
            h.spin_for(0.5)
            assert len(flames) == n_before
            assert _topic_users(h, "/avatar/flame_params") == (0, 1) and _topic_users(h, "/audio/self") == (1, 0)
            assert not node._worker.is_alive()

            # activate again: output resumes; then deactivate + cleanup releases the model
            assert _change(h, "motion_node", Transition.TRANSITION_ACTIVATE)
            for _ in range(10):
                feed(1.0)
                if len(flames) > n_before:
                    break
            assert len(flames) > n_before
            assert _change(h, "motion_node", Transition.TRANSITION_DEACTIVATE)
            assert _change(h, "motion_node", Transition.TRANSITION_CLEANUP)
            assert _state(h, "motion_node") == "unconfigured" and node._gen is None
        finally:
            h.executor.remove_node(node)
            node.destroy_node()


def test_render_node_inactive_renders_nothing_and_active_renders():
    from rsatalker_ros.nodes.render_node import RenderNode

    with RosHarness(free_domain_id()) as h:
        images = []
        h.node.create_subscription(Image, "avatar/image", images.append, topics.IMAGE_SUB_QOS)
        flame_pub = h.node.create_publisher(FlameParams, topics.AVATAR_FLAME, topics.FLAME_PUB_QOS)
        node = RenderNode(context=h.context, parameter_overrides=[
            Parameter("config_file", value=str(SMALL_CONFIG)), Parameter("autostart", value=False)])
        h.executor.add_node(node)
        motion = np.zeros(56, np.float32)
        try:
            assert not hasattr(node, "renderer") or node.renderer is None
            assert _change(h, "render_node", Transition.TRANSITION_CONFIGURE)
            assert node.renderer is not None
            for i in range(10):
                flame_pub.publish(array_to_flame_params(motion, stamp_ns=1_000_000_000 + i, frame_index=i))
                h.spin_for(0.05)
            h.spin_for(0.5)
            assert images == [] and _topic_users(h, "/avatar/image") == (0, 1)
            assert _topic_users(h, "/tf_static") == (0, 0)  # the static TF comes with activation

            assert _change(h, "render_node", Transition.TRANSITION_ACTIVATE)
            for i in range(100):
                flame_pub.publish(array_to_flame_params(motion, stamp_ns=2_000_000_000 + i, frame_index=i))
                if h.spin_until(lambda: bool(images), 0.1):
                    break
            assert images and _topic_users(h, "/tf_static")[0] == 1

            assert _change(h, "render_node", Transition.TRANSITION_DEACTIVATE)
            h.spin_for(0.5)
            n_before = len(images)
            for i in range(10):
                flame_pub.publish(array_to_flame_params(motion, stamp_ns=3_000_000_000 + i, frame_index=i))
                h.spin_for(0.05)
            h.spin_for(0.5)
            assert len(images) == n_before and _topic_users(h, "/avatar/image") == (0, 1)
            assert _change(h, "render_node", Transition.TRANSITION_CLEANUP) and node.renderer is None
        finally:
            h.executor.remove_node(node)
            node.destroy_node()


def test_face_tracker_lifecycle_and_a_failed_configure_stays_unconfigured():
    pytest.importorskip("mediapipe")
    from rsatalker_ros.nodes.face_tracker import FaceTrackerNode
    from rsatalker_ros.nodes.motion_node import MotionNode

    with RosHarness(free_domain_id()) as h:
        node = FaceTrackerNode(context=h.context, parameter_overrides=[Parameter("autostart", value=False)])
        h.executor.add_node(node)
        try:
            assert node.tracker is None and _topic_users(h, "/partner/flame_params") == (0, 0)
            assert _change(h, "face_tracker", Transition.TRANSITION_CONFIGURE) and node.tracker is not None
            assert _topic_users(h, "/partner/camera/image") == (0, 0)
            assert _change(h, "face_tracker", Transition.TRANSITION_ACTIVATE)
            assert h.spin_until(lambda: _topic_users(h, "/partner/camera/image") == (0, 1), 10.0)
            assert h.spin_until(lambda: _topic_users(h, "/partner/flame_params") == (1, 0), 10.0)
            assert _change(h, "face_tracker", Transition.TRANSITION_DEACTIVATE)
            assert h.spin_until(lambda: _topic_users(h, "/partner/camera/image") == (0, 0), 10.0)
        finally:
            h.executor.remove_node(node)
            node.destroy_node()

        # a configure that cannot succeed (a model checkpoint that does not exist): the
        # transition fails, the node stays unconfigured and keeps the reason
        bad = MotionNode(context=h.context, parameter_overrides=[
            Parameter("config_file", value=str(SMALL_CONFIG)), Parameter("autostart", value=False),
            Parameter("motion.checkpoint", value=str(REPO / "does_not_exist.pt"))])
        try:
            assert bad.trigger_configure().name == "FAILURE"
            assert bad.lifecycle_state == "unconfigured" and bad._gen is None
            assert "does_not_exist.pt" in str(bad.lifecycle_error)
        finally:
            bad.destroy_node()
        # with autostart the same error comes out of the constructor (a standalone node exits 1)
        from rsatalker_core.errors import RsatalkerError

        with pytest.raises(RsatalkerError, match="does_not_exist"):
            MotionNode(context=h.context, parameter_overrides=[
                Parameter("config_file", value=str(SMALL_CONFIG)),
                Parameter("motion.checkpoint", value=str(REPO / "does_not_exist.pt"))])
