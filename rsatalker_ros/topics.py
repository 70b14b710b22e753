"""ROS QoS profiles of rsatalker's topics, built from the ROS-free topic specs of
:mod:`rsatalker_core.io.session_topics` (the one place names, types and QoS classes are
written; docs/ros.md "QoS").

The string constants below (``AVATAR_FLAME`` ...) are the relative topic names of those
specs, for ``create_publisher`` / ``create_subscription``. :func:`publisher_qos` and
:func:`subscription_qos` turn a spec's QoS class into a profile:

=========  ==========================================  =============================
class      publisher                                   subscription
=========  ==========================================  =============================
reliable   reliable, volatile                          reliable, volatile
sensor     reliable, volatile, small depth             best effort, volatile
latched    reliable, transient local                   reliable, transient local
=========  ==========================================  =============================

What stays here is ROS-only: the history depths (:data:`DEPTHS`). Audio keeps a deeper
history than the stock sensor-data profile (5): chunks are 40 ms, and a short stall of the
subscriber must not drop speech.

Every node passes :func:`overriding` (``QoSOverridingOptions.with_default_policies()``) to
each publisher and subscription, so reliability, history and depth can be changed per topic
with the parameters ``qos_overrides./<resolved topic>.<publisher|subscription>.<policy>``
(read once, at start-up; they are read-only afterwards). rclpy applies the overrides to the
profile object it is given, in place: give each such publisher or subscription a profile of
its own (:func:`publisher_qos` / :func:`subscription_qos` build a new one per call), never one
of the shared constants below.
"""

from __future__ import annotations

from typing import Dict, Optional

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.qos_overriding_options import QoSOverridingOptions

from rsatalker_core.io import session_topics as st

AUDIO_SELF = st.AUDIO_SELF.name
AUDIO_PARTNER = st.AUDIO_PARTNER.name
PARTNER_FLAME = st.PARTNER_FLAME.name
AVATAR_FLAME = st.AVATAR_FLAME.name
RELATIONSHIP = st.RELATIONSHIP.name
AVATAR_IMAGE = st.AVATAR_IMAGE.name
AVATAR_IMAGE_COMPRESSED = st.AVATAR_IMAGE_COMPRESSED.name
AVATAR_CAMERA_INFO = st.AVATAR_CAMERA_INFO.name
TRAINING_PROGRESS = st.TRAINING_PROGRESS.name
TF = st.TF.name
TF_STATIC = st.TF_STATIC.name

#: History depth (KEEP_LAST) of each topic role; other camera topics keep 2, the rest 10.
DEPTHS: Dict[str, int] = {
    "self_audio": 50,  # 2 s of 40-ms chunks
    "partner_audio": 50,
    "avatar_flame": 50,  # 2 s at 25 fps
    "partner_flame": 50,
    "image": 2,  # only the newest frame matters
    "image_compressed": 2,
    "camera_info": 2,
    "partner_camera": 2,
    "partner_camera_compressed": 2,
    "partner_camera_info": 2,
    "relationship": 1,  # the current relationship
    "training_progress": 10,  # the last 10 reports
    "tf": 100,  # tf2_ros' DynamicBroadcasterQoS / listener depth
    "tf_static": 1,  # tf2_ros' StaticBroadcasterQoS
}


def audio_topic(role: str) -> str:
    """``audio/self`` or ``audio/partner`` for ``role`` in ``("self", "partner")``.

    Raises:
        RsatalkerError: any other role.
    """
    return st.audio_topic(role).name


def reliability(spec: st.TopicSpec) -> ReliabilityPolicy:
    """The reliability of ``spec``'s *subscriptions* (publishers are always reliable)."""
    return ReliabilityPolicy.RELIABLE if spec.reliable else ReliabilityPolicy.BEST_EFFORT


def _depth(spec: st.TopicSpec, depth: Optional[int]) -> int:
    """``depth``, else :data:`DEPTHS` of the role, else 2 for camera streams
    (``sensor_msgs`` images and camera info), else 10."""
    if depth is not None:
        return int(depth)
    if spec.role in DEPTHS:
        return DEPTHS[spec.role]
    return 2 if spec.msgtype.startswith("sensor_msgs/msg/") else 10


def _durability(spec: st.TopicSpec) -> DurabilityPolicy:
    return DurabilityPolicy.TRANSIENT_LOCAL if spec.latched else DurabilityPolicy.VOLATILE


def publisher_qos(spec: st.TopicSpec, depth: Optional[int] = None) -> QoSProfile:
    """Publisher profile of ``spec``: reliable (so reliable subscribers such as rviz match),
    transient local for ``latched`` topics, KEEP_LAST ``depth`` (default :data:`DEPTHS`)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=_depth(spec, depth),
                      reliability=ReliabilityPolicy.RELIABLE, durability=_durability(spec))


def subscription_qos(spec: st.TopicSpec, depth: Optional[int] = None) -> QoSProfile:
    """Subscription profile of ``spec``: best effort for ``sensor`` topics (matches any
    publisher), reliable otherwise; transient local for ``latched`` topics."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=_depth(spec, depth),
                      reliability=reliability(spec), durability=_durability(spec))


def overriding(entity_id: Optional[str] = None) -> QoSOverridingOptions:
    """QoS overriding options for one publisher or subscription: reliability, history and
    depth become the read-only parameters ``qos_overrides./<topic>.<publisher|subscription>[_<entity_id>].*``
    (``entity_id`` tells apart two subscriptions of one topic in one node)."""
    opts = QoSOverridingOptions.with_default_policies()
    if entity_id is not None:
        opts = QoSOverridingOptions(opts.policy_kinds, entity_id=entity_id)
    return opts


#: Audio: publishers reliable (last 50 chunks, 2 s), subscriptions best effort.
AUDIO_PUB_QOS = publisher_qos(st.AUDIO_SELF)
AUDIO_SUB_QOS = subscription_qos(st.AUDIO_SELF)
#: Rendered images, compressed images and camera info: publishers reliable with depth 2,
#: subscriptions best effort.
IMAGE_PUB_QOS = publisher_qos(st.AVATAR_IMAGE)
IMAGE_SUB_QOS = subscription_qos(st.AVATAR_IMAGE)
#: The avatar's FLAME parameters: reliable both ends, 2 s of history at 25 fps.
FLAME_PUB_QOS = publisher_qos(st.AVATAR_FLAME)
FLAME_SUB_QOS = subscription_qos(st.AVATAR_FLAME)
#: The partner's FLAME parameters (a tracker's output): reliable publishers, best-effort
#: subscriptions (so a best-effort tracker matches).
PARTNER_FLAME_PUB_QOS = publisher_qos(st.PARTNER_FLAME)
PARTNER_FLAME_SUB_QOS = subscription_qos(st.PARTNER_FLAME)
#: Relationship: latched (reliable, transient local, depth 1) on both ends, so a subscriber
#: that starts late (a model still loading) gets the last relationship sent.
RELATIONSHIP_PUB_QOS = publisher_qos(st.RELATIONSHIP)
RELATIONSHIP_SUB_QOS = subscription_qos(st.RELATIONSHIP)
#: Training progress: reliable and latched (last 10 reports), so a monitor that subscribes
#: late still sees the latest state (e.g. ``finished`` and its checkpoint).
TRAINING_PROGRESS_QOS = publisher_qos(st.TRAINING_PROGRESS)
#: TF: tf2_ros' broadcaster profiles (dynamic: reliable, depth 100; static: latched, depth 1).
TF_QOS = publisher_qos(st.TF)
TF_STATIC_QOS = publisher_qos(st.TF_STATIC)

#: Former names, kept for callers that used one profile on both ends: the subscription
#: side for sensor topics (matches any publisher), reliable FLAME.
AUDIO_QOS = AUDIO_SUB_QOS
IMAGE_QOS = IMAGE_SUB_QOS
FLAME_QOS = FLAME_SUB_QOS
