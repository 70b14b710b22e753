"""QoS that common tools can subscribe to (issue 11.1, 11.3), in-process rclpy:

* a subscriber at rviz / web_video_server / foxglove_bridge defaults (reliable, volatile,
  depth 10) receives the render node's image, JPEG and camera info (same stamp, optical
  frame id; JPEG within 30 dB PSNR of the raw image; camera info K = the renderer's), and
  the motion node's FLAME parameters;
* a relationship published (latched) before the motion node exists reaches it;
* ``qos_overrides.*`` parameters change a publisher's and a subscription's QoS.
"""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
cv2 = pytest.importorskip("cv2")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from rsatalker.msg import FlameParams  # noqa: E402
from rsatalker.msg import Relationship as RelationshipMsg  # noqa: E402
from rsatalker_core.model.streaming import MotionFrame  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import (  # noqa: E402
    array_to_flame_params, camera_image_to_array, image_to_array, relationship_to_msg, time_to_ns,
)
from rsatalker_ros.testing import REPO, RosHarness, free_domain_id  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"
#: What rviz2, web_video_server and foxglove_bridge subscribe with by default.
TOOL_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def test_render_node_images_reach_reliable_tools_and_qos_overrides_apply():
    from rsatalker_ros.nodes.render_node import RenderNode

    with RosHarness(free_domain_id()) as h:
        got = {"image": [], "jpeg": [], "info": []}
        h.node.create_subscription(Image, "avatar/image", got["image"].append, TOOL_QOS)
        # the JPEG publisher is overridden to best effort below: subscribe with the sensor-data profile
        h.node.create_subscription(CompressedImage, "avatar/image/compressed", got["jpeg"].append, topics.IMAGE_SUB_QOS)
        h.node.create_subscription(CameraInfo, "avatar/camera_info", got["info"].append, TOOL_QOS)
        node = RenderNode(context=h.context, parameter_overrides=[
            Parameter("config_file", value=str(SMALL_CONFIG)),
            Parameter("qos_overrides./avatar/image.publisher.depth", value=7),
            Parameter("qos_overrides./avatar/image/compressed.publisher.reliability", value="best_effort"),
            Parameter("qos_overrides./avatar/flame_params.subscription.reliability", value="best_effort"),
        ])
        try:
            # the overrides: queried from the graph, as `ros2 topic info -v` shows them
            assert h.spin_until(lambda: len(h.node.get_publishers_info_by_topic("/avatar/image")) == 1, 10.0)
            (img_pub,) = h.node.get_publishers_info_by_topic("/avatar/image")
            assert img_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE  # the default
            (jpeg_pub,) = h.node.get_publishers_info_by_topic("/avatar/image/compressed")
            assert jpeg_pub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT  # overridden
            # DDS discovery does not carry the history depth: read it from the publisher itself
            assert node._pub.qos_profile.depth == 7 and node._pub_info.qos_profile.depth == topics.DEPTHS["camera_info"]
            (flame_sub,) = h.node.get_subscriptions_info_by_topic("/avatar/flame_params")
            assert flame_sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
            assert node.get_parameter("qos_overrides./avatar/image.publisher.reliability").value == "reliable"

            motion = np.zeros(56, np.float32)
            motion[50] = 0.2  # jaw open
            motion[53:56] = [0.1, 0.3, 0.0]
            stamp = 1_234_000_000
            for _ in range(20):  # until discovery has matched all three
                node._on_flame(array_to_flame_params(motion, stamp_ns=stamp, frame_index=3))
                if h.spin_until(lambda: all(got.values()), 1.0):
                    break
            assert all(got.values()), {k: len(v) for k, v in got.items()}
            K = node.renderer.K[0].double().numpy()  # (destroy_node releases the renderer)
        finally:
            node.destroy_node()
        image, jpeg, info = got["image"][-1], got["jpeg"][-1], got["info"][-1]
        assert time_to_ns(image.header.stamp) == time_to_ns(jpeg.header.stamp) == time_to_ns(info.header.stamp) == stamp
        assert image.header.frame_id == jpeg.header.frame_id == info.header.frame_id == "avatar_camera_optical"
        raw = image_to_array(image)
        decoded = camera_image_to_array(jpeg)
        assert "jpeg" in jpeg.format and decoded.shape == raw.shape
        assert raw.std() > 5  # a real render, not a blank frame
        assert _psnr(decoded, raw) > 30.0
        assert np.allclose(np.asarray(info.k).reshape(3, 3), K)
        assert np.allclose(np.asarray(info.p).reshape(3, 4)[:, :3], K) and np.allclose(np.asarray(info.p)[[3, 7, 11]], 0)
        assert (info.width, info.height) == (raw.shape[1], raw.shape[0])
        assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5


def test_motion_node_flame_reaches_reliable_subscriber_and_latched_relationship_is_not_missed():
    from rsatalker_ros.nodes.motion_node import MotionNode

    with RosHarness(free_domain_id()) as h:
        # the relationship is sent BEFORE the motion node exists (its model still loading)
        pub = h.node.create_publisher(RelationshipMsg, topics.RELATIONSHIP, topics.RELATIONSHIP_PUB_QOS)
        pub.publish(relationship_to_msg("siblings"))
        flames = []
        h.node.create_subscription(FlameParams, "avatar/flame_params", flames.append, TOOL_QOS)
        node = MotionNode(context=h.context, parameter_overrides=[
            Parameter("config_file", value=str(SMALL_CONFIG)), Parameter("relationship", value="couple"),
        ])
        h.executor.add_node(node)
        try:
            assert h.spin_until(lambda: node.get_parameter("relationship").value == "siblings", 10.0), \
                node.get_parameter("relationship").value
            (audio_sub,) = h.node.get_subscriptions_info_by_topic("/audio/self")
            assert audio_sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT  # sensor data in
            (flame_pub,) = h.node.get_publishers_info_by_topic("/avatar/flame_params")
            assert flame_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
            motion = np.linspace(-0.1, 0.1, 56).astype(np.float32)
            for i in range(20):
                node._publish(MotionFrame(i, motion, 40_000_000 * (i + 1), "siblings"), 0)
                if h.spin_until(lambda: bool(flames), 0.5):
                    break
            assert flames and flames[-1].relationship == "siblings"
            assert np.allclose(np.asarray(flames[-1].head_pose), motion[53:56])
        finally:
            h.executor.remove_node(node)
            node.destroy_node()
