"""Topic names and QoS profiles shared by rsatalker's nodes.

Names are relative, so a node started in a namespace (or remapped) keeps working.

=========================  ============================  =========================
topic                      type                          QoS
=========================  ============================  =========================
``audio/self``             rsatalker/AudioChunk          sensor data (best effort)
``audio/partner``          rsatalker/AudioChunk          sensor data (best effort)
``partner/flame_params``   rsatalker/FlameParams         reliable
``avatar/flame_params``    rsatalker/FlameParams         reliable
``relationship``           rsatalker/Relationship        reliable
``avatar/image``           sensor_msgs/Image (rgb8)      sensor data (best effort)
``training/progress``      rsatalker/TrainingProgress    reliable, transient local
=========================  ============================  =========================

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

AUDIO_SELF = "audio/self"
AUDIO_PARTNER = "audio/partner"
PARTNER_FLAME = "partner/flame_params"
AVATAR_FLAME = "avatar/flame_params"
RELATIONSHIP = "relationship"
AVATAR_IMAGE = "avatar/image"
TRAINING_PROGRESS = "training/progress"


def audio_topic(role: str) -> str:
    """``audio/self`` or ``audio/partner`` for ``role`` in ``("self", "partner")``."""
    return AUDIO_SELF if role == "self" else AUDIO_PARTNER


#: Audio chunks: best effort, volatile, last 50 chunks (2 s at 40 ms).
AUDIO_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
#: Rendered images: best effort, only the newest matters.
IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=2,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
#: FLAME parameters: reliable, 2 s of history at 25 fps.
FLAME_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
#: Relationship subscriptions: reliable and volatile, so they match both volatile and
#: transient-local (latched) publishers.
RELATIONSHIP_SUB_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
#: Relationship publishers: latched (transient local), so late subscribers get the last one.
RELATIONSHIP_PUB_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
#: Training progress: reliable and latched (transient local, last 10 reports), so a monitor
#: that subscribes late still sees the latest state (e.g. ``finished`` and its checkpoint).
TRAINING_PROGRESS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
