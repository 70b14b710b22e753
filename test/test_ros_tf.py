"""TF under real rclpy (issue 11.4; docs/ros.md "Frames"):

* ``tf2_msgs/TFMessage`` is importable (a ROS installation's, or the one scripts/build_msgs.sh
  builds from third_party_msgs/tf2_msgs) and its type hash is ROS 2 Jazzy's, so rviz and tf2
  on a real ROS graph match our /tf publishers;
* a subscriber to ``/tf`` receives the motion node's ``avatar_head`` transform for every
  published FLAME frame, stamped like it, whose rotation is the frame's FLAME head pose
  carried into REP-103 axes (checked against :mod:`rsatalker_core.head.frames` and against
  an independent scipy rotation), both for a known pose and for frames the node generates
  from audio;
* ``/tf_static`` (transient local) carries the render camera's optical frame to a
  subscriber that joins after it was sent.
"""

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not installed (scripts/build_msgs.sh builds it)")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from rsatalker.msg import AudioChunk, FlameParams  # noqa: E402
from rsatalker_core.head.frames import (  # noqa: E402
    FLAME_TO_REP103, camera_optical_transform_rep103, flame_vector_to_rep103, head_transform_rep103, quaternion_to_matrix,
)
from rsatalker_core.model.streaming import MotionFrame  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import array_to_audio_chunk, time_to_ns  # noqa: E402
from rsatalker_ros.testing import REPO, RosHarness, free_domain_id  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"
#: tf2_ros' listener profiles (tf2_ros/qos.py): /tf reliable depth 100, /tf_static latched.
TF_LISTENER_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
TF_STATIC_LISTENER_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: RIHS01 type hash of tf2_msgs/msg/TFMessage in ROS 2 Jazzy (the same value rosbags'
#: Jazzy typestore computes; checked against it below when rosbags is installed).
JAZZY_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def _quat(tf) -> np.ndarray:
    r = tf.transform.rotation
    return np.array([r.x, r.y, r.z, r.w])


def _same_rotation(q_a, q_b, atol=1e-6) -> bool:
    """Quaternions of the same rotation (q and -q are the same)."""
    return min(np.abs(np.asarray(q_a) - q_b).max(), np.abs(np.asarray(q_a) + q_b).max()) < atol


def _head_transforms(msgs):
    return {time_to_ns(t.header.stamp): t for m in msgs for t in m.transforms if t.child_frame_id == "avatar_head"}


def test_tfmessage_type_hash_is_jazzys():
    rosbags = pytest.importorskip("rosbags.typesys")
    store = rosbags.get_typestore(rosbags.Stores.ROS2_JAZZY)
    assert store.hash_rihs01("tf2_msgs/msg/TFMessage") == JAZZY_TFMESSAGE_HASH
    with RosHarness(free_domain_id()) as h:
        h.node.create_publisher(TFMessage, "/tf", TF_LISTENER_QOS)
        assert h.spin_until(lambda: bool(h.node.get_publishers_info_by_topic("/tf")), 5.0)
        (info,) = h.node.get_publishers_info_by_topic("/tf")
        assert info.topic_type == "tf2_msgs/msg/TFMessage"
        assert str(info.topic_type_hash) == JAZZY_TFMESSAGE_HASH


def test_motion_node_head_frame_on_tf_matches_the_flame_head_pose():
    from rsatalker_ros.nodes.motion_node import MotionNode

    with RosHarness(free_domain_id()) as h:
        tf_msgs, flames = [], []
        h.node.create_subscription(TFMessage, "/tf", tf_msgs.append, TF_LISTENER_QOS)
        h.node.create_subscription(FlameParams, "avatar/flame_params", flames.append, TF_LISTENER_QOS)
        audio_pub = h.node.create_publisher(AudioChunk, topics.AUDIO_SELF, topics.AUDIO_PUB_QOS)
        node = MotionNode(context=h.context, parameter_overrides=[Parameter("config_file", value=str(SMALL_CONFIG))])
        h.executor.add_node(node)
        try:
            assert h.spin_until(lambda: bool(h.node.get_publishers_info_by_topic("/tf")), 10.0)
            (info,) = h.node.get_publishers_info_by_topic("/tf")
            assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE  # what tf2 listeners match

            # 1. a known head pose (radians, FLAME axis-angle): nod down, turn left, a little roll
            pose = np.array([0.30, -0.45, 0.12])
            motion = np.zeros(56, np.float32)
            motion[53:56] = pose
            stamp = 7_000_000_000
            for i in range(20):  # until discovery has matched
                node._publish(MotionFrame(i, motion, stamp, "strangers"), 0)
                if h.spin_until(lambda: stamp in _head_transforms(tf_msgs), 0.5):
                    break
            tf = _head_transforms(tf_msgs)[stamp]
            assert tf.header.frame_id == "avatar_base"
            t, q = head_transform_rep103(pose.astype(np.float32).astype(np.float64))
            assert _same_rotation(_quat(tf), q)
            # independently: R_rep = M R_flame M^T with scipy's axis-angle
            R_flame = Rotation.from_rotvec(pose).as_matrix()
            assert np.allclose(quaternion_to_matrix(_quat(tf)), FLAME_TO_REP103 @ R_flame @ FLAME_TO_REP103.T,
                               atol=1e-6)
            tr = tf.transform.translation
            assert (tr.x, tr.y, tr.z) == (0.0, 0.0, 0.0)

            # 2. frames the node generates itself from audio: one head transform per FLAME frame,
            #    stamped like it, with that frame's head pose
            tf_msgs.clear()
            flames.clear()
            sr, n = 16000, 640  # 40 ms chunks
            rng = np.random.default_rng(0)
            t0 = 10_000_000_000
            for k in range(60):
                x = (0.3 * np.sin(2 * np.pi * 180 * np.arange(n) / sr) * (k % 10 < 6)
                     + 0.01 * rng.standard_normal(n)).astype(np.float32)
                audio_pub.publish(array_to_audio_chunk(x, sr, stamp_ns=t0 + k * 40_000_000))
                h.spin_until(lambda: False, 0.01)
            assert h.spin_until(lambda: len(flames) >= 20 and node.idle(), 60.0), len(flames)
            h.spin_until(lambda: False, 0.3)
            flames = [f for f in flames if time_to_ns(f.header.stamp) >= t0]  # not part 1's late copies
            heads = {s: t for s, t in _head_transforms(tf_msgs).items() if s >= t0}
            assert len(heads) == len(flames) >= 20
            for f in flames:
                tf = heads[time_to_ns(f.header.stamp)]
                _, q = head_transform_rep103(np.asarray(f.head_pose, np.float64))
                assert _same_rotation(_quat(tf), q)
            assert np.ptp([np.asarray(f.head_pose) for f in flames], axis=0).max() > 0  # the head moves
        finally:
            h.executor.remove_node(node)
            node.destroy_node()


def test_render_node_camera_optical_frame_on_tf_static_reaches_a_late_subscriber():
    from rsatalker_ros.nodes.render_node import RenderNode

    with RosHarness(free_domain_id()) as h:
        node = RenderNode(context=h.context, parameter_overrides=[Parameter("config_file", value=str(SMALL_CONFIG))])
        h.executor.add_node(node)
        try:
            h.spin_for(0.5)  # sent at start-up, before anyone subscribed
            static = []
            h.node.create_subscription(TFMessage, "/tf_static", static.append, TF_STATIC_LISTENER_QOS)
            assert h.spin_until(lambda: bool(static), 10.0), "no /tf_static for a late (transient-local) subscriber"
            (info,) = h.node.get_publishers_info_by_topic("/tf_static")
            assert info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
            cams = [t for m in static for t in m.transforms if t.child_frame_id == "avatar_camera_optical"]
            assert cams and cams[-1].header.frame_id == "avatar_base"
            cam = cams[-1]
            t, q = camera_optical_transform_rep103(node.renderer.viewmat[0].detach().cpu().double().numpy())
            # avatar_base sits on the head's pivot (the FLAME root joint), like the head frame
            pivot = flame_vector_to_rep103(node.head_pivot())
            tr = cam.transform.translation
            assert np.allclose([tr.x, tr.y, tr.z], t - pivot, atol=1e-9) and _same_rotation(_quat(cam), q)
            # REP 103: the camera is in front of the face (+x) and its optical z axis looks back
            # at the face (the FLAME origin), image down (optical y) is down (-z)
            assert t[0] > 0.1 and abs(t[1]) < 0.05
            R = quaternion_to_matrix(_quat(cam))
            assert R[:, 2] @ (-t / np.linalg.norm(t)) > 0.95
            assert R[2, 1] < -0.9
        finally:
            h.executor.remove_node(node)
            node.destroy_node()
