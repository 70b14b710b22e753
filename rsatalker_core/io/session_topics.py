"""The topics of an rsatalker session: names, message types, roles and QoS classes.

The one place topic names are written. The ROS nodes (through :mod:`rsatalker_ros.topics`,
which adds the ROS QoS profiles), the recorder node, the bag writer and reader
(:mod:`rsatalker_core.io.bag_types`, :mod:`rsatalker_core.evaluation.bag`) and
``launch/rsatalker.launch.py`` (``record:=true``) all take them from here. This module is
ROS-free: message types are named as rosbag2 stores them (``pkg/msg/Type``).

Names are relative, so a node started in a namespace (or remapped) keeps working; a bag
stores the resolved absolute names (``/avatar/flame_params``).

========================  ===============================  ===================  ===========
topic                     type                             role                 QoS class
========================  ===============================  ===================  ===========
``avatar/flame_params``   ``rsatalker/msg/FlameParams``    ``avatar_flame``     reliable
``avatar/image``          ``sensor_msgs/msg/Image`` rgb8   ``image``            best effort
``audio/self``            ``rsatalker/msg/AudioChunk``     ``self_audio``       best effort
``audio/partner``         ``rsatalker/msg/AudioChunk``     ``partner_audio``    best effort
``partner/flame_params``  ``rsatalker/msg/FlameParams``    ``partner_flame``    reliable
``relationship``          ``rsatalker/msg/Relationship``   ``relationship``     reliable
``partner/camera/image``  ``sensor_msgs/msg/Image``        ``partner_camera``   best effort
``training/progress``     ``rsatalker/msg/TrainingProgress`` ``training_progress`` reliable
========================  ===============================  ===================  ===========

The first six are the *session topics* (:data:`SESSION`): what a recording holds and what
``rsatalker evaluate-bag`` reads. Training progress and the partner camera (the face
tracker's input; ``partner/camera/image/compressed`` and ``partner/camera/camera_info``
beside it, image_transport style) are not part of a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from rsatalker_core.errors import RsatalkerError

__all__ = [
    "RELIABLE",
    "BEST_EFFORT",
    "TopicSpec",
    "AVATAR_FLAME",
    "AVATAR_IMAGE",
    "AUDIO_SELF",
    "AUDIO_PARTNER",
    "PARTNER_FLAME",
    "RELATIONSHIP",
    "TRAINING_PROGRESS",
    "PARTNER_CAMERA",
    "PARTNER_CAMERA_COMPRESSED",
    "PARTNER_CAMERA_INFO",
    "SESSION",
    "SESSION_TOPICS",
    "ALL_TOPICS",
    "audio_topic",
    "session_topic_names",
]

#: QoS class of a topic whose every message matters (FLAME frames, relationship changes).
RELIABLE = "reliable"
#: QoS class of a sensor-like stream where only fresh data matters (audio, images).
BEST_EFFORT = "best_effort"


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the rsatalker graph.

    Attributes:
        name: relative topic name, e.g. ``"avatar/flame_params"``.
        msgtype: message type as rosbag2 names it, e.g. ``"rsatalker/msg/FlameParams"``.
        role: what the topic carries: ``avatar_flame``, ``image``, ``self_audio``,
            ``partner_audio``, ``partner_flame``, ``relationship`` or ``training_progress``.
        qos: default QoS class, :data:`RELIABLE` or :data:`BEST_EFFORT`.
        description: one line, with rates and units.
    """

    name: str
    msgtype: str
    role: str
    qos: str
    description: str

    @property
    def absolute(self) -> str:
        """The name in the root namespace (``/avatar/flame_params``), as ``ros2 bag record`` takes it."""
        return "/" + self.name

    @property
    def reliable(self) -> bool:
        return self.qos == RELIABLE


AVATAR_FLAME = TopicSpec("avatar/flame_params", "rsatalker/msg/FlameParams", "avatar_flame", RELIABLE,
                         "the avatar's motion [exp 50 | jaw 3 | head 3] (radians), 25 fps")
AVATAR_IMAGE = TopicSpec("avatar/image", "sensor_msgs/msg/Image", "image", BEST_EFFORT,
                         "rendered frames (rgb8), stamped with their FLAME frame's stamp")
AUDIO_SELF = TopicSpec("audio/self", "rsatalker/msg/AudioChunk", "self_audio", BEST_EFFORT,
                       "the avatar's speech, mono float32 chunks (40 ms by default)")
AUDIO_PARTNER = TopicSpec("audio/partner", "rsatalker/msg/AudioChunk", "partner_audio", BEST_EFFORT,
                          "the partner's speech, mono float32 chunks (40 ms by default)")
PARTNER_FLAME = TopicSpec("partner/flame_params", "rsatalker/msg/FlameParams", "partner_flame", RELIABLE,
                          "the partner's motion (from a face tracker), 25 fps")
RELATIONSHIP = TopicSpec("relationship", "rsatalker/msg/Relationship", "relationship", RELIABLE,
                         "social relationship changes (latched by publishers)")
TRAINING_PROGRESS = TopicSpec("training/progress", "rsatalker/msg/TrainingProgress", "training_progress",
                              RELIABLE, "training reports (step, losses, checkpoints)")

PARTNER_CAMERA = TopicSpec("partner/camera/image", "sensor_msgs/msg/Image", "partner_camera", BEST_EFFORT,
                           "the camera that sees the partner (rgb8, bgr8 or mono8), stamped at capture")
PARTNER_CAMERA_COMPRESSED = TopicSpec(
    "partner/camera/image/compressed", "sensor_msgs/msg/CompressedImage", "partner_camera_compressed", BEST_EFFORT,
    "the same camera, jpeg or png (image_transport's compressed transport)")
PARTNER_CAMERA_INFO = TopicSpec("partner/camera/camera_info", "sensor_msgs/msg/CameraInfo", "partner_camera_info",
                                BEST_EFFORT, "its intrinsics (optional; without them a 60-degree field of view)")

#: The topics of a recorded session, in recording order.
SESSION: Tuple[TopicSpec, ...] = (AVATAR_FLAME, AVATAR_IMAGE, AUDIO_SELF, AUDIO_PARTNER, PARTNER_FLAME,
                                  RELATIONSHIP)
#: Every topic of the graph.
ALL_TOPICS: Tuple[TopicSpec, ...] = SESSION + (TRAINING_PROGRESS, PARTNER_CAMERA, PARTNER_CAMERA_COMPRESSED,
                                               PARTNER_CAMERA_INFO)
#: Session topic (relative name) -> message type.
SESSION_TOPICS: Dict[str, str] = {t.name: t.msgtype for t in SESSION}


def audio_topic(role: str) -> TopicSpec:
    """:data:`AUDIO_SELF` or :data:`AUDIO_PARTNER` for ``role`` ``"self"`` / ``"partner"``.

    Raises:
        RsatalkerError: any other role.
    """
    if role == "self":
        return AUDIO_SELF
    if role == "partner":
        return AUDIO_PARTNER
    raise RsatalkerError(f"audio role must be 'self' or 'partner', got {role!r}")


def session_topic_names(absolute: bool = False) -> List[str]:
    """Names of the :data:`SESSION` topics, relative or (``absolute=True``) with a leading ``/``."""
    return [t.absolute if absolute else t.name for t in SESSION]
