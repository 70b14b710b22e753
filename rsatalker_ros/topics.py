"""ROS QoS profiles of rsatalker's topics; the names come from
:mod:`rsatalker_core.io.session_topics` (the one place they are written).

The string constants below (``AVATAR_FLAME`` ...) are the relative topic names of those
specs, for ``create_publisher`` / ``create_subscription``; each profile's reliability is the
spec's QoS class (a test checks it). What stays here is ROS-only: history depth and
durability.

Audio keeps a deeper history than the stock sensor-data profile (5): chunks are 40 ms, and
a short stall of the subscriber must not drop speech.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from rsatalker_core.io import session_topics as st

AUDIO_SELF = st.AUDIO_SELF.name
AUDIO_PARTNER = st.AUDIO_PARTNER.name
PARTNER_FLAME = st.PARTNER_FLAME.name
AVATAR_FLAME = st.AVATAR_FLAME.name
RELATIONSHIP = st.RELATIONSHIP.name
AVATAR_IMAGE = st.AVATAR_IMAGE.name
TRAINING_PROGRESS = st.TRAINING_PROGRESS.name


def audio_topic(role: str) -> str:
    """``audio/self`` or ``audio/partner`` for ``role`` in ``("self", "partner")``.

    Raises:
        RsatalkerError: any other role.
    """
    return st.audio_topic(role).name


def reliability(spec: st.TopicSpec) -> ReliabilityPolicy:
    """The ROS reliability policy of ``spec``'s QoS class."""
    return ReliabilityPolicy.RELIABLE if spec.reliable else ReliabilityPolicy.BEST_EFFORT


#: Audio chunks: best effort, volatile, last 50 chunks (2 s at 40 ms).
AUDIO_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=reliability(st.AUDIO_SELF),
    durability=DurabilityPolicy.VOLATILE,
)
#: Rendered images: best effort, only the newest matters.
IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=2,
    reliability=reliability(st.AVATAR_IMAGE),
    durability=DurabilityPolicy.VOLATILE,
)
#: FLAME parameters: reliable, 2 s of history at 25 fps.
FLAME_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=reliability(st.AVATAR_FLAME),
    durability=DurabilityPolicy.VOLATILE,
)
#: Relationship subscriptions: reliable and volatile, so they match both volatile and
#: transient-local (latched) publishers.
RELATIONSHIP_SUB_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=reliability(st.RELATIONSHIP),
    durability=DurabilityPolicy.VOLATILE,
)
#: Relationship publishers: latched (transient local), so late subscribers get the last one.
RELATIONSHIP_PUB_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=reliability(st.RELATIONSHIP),
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
#: Training progress: reliable and latched (transient local, last 10 reports), so a monitor
#: that subscribes late still sees the latest state (e.g. ``finished`` and its checkpoint).
TRAINING_PROGRESS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=reliability(st.TRAINING_PROGRESS),
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
