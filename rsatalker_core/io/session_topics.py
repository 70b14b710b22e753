"""The topics of an rsatalker session: names, message types, roles and QoS classes.

The one place topic names are written. The ROS nodes (through :mod:`rsatalker_ros.topics`,
which adds the ROS QoS profiles), the recorder node, the bag writer and reader
(:mod:`rsatalker_core.io.bag_types`, :mod:`rsatalker_core.evaluation.bag`) and
``launch/rsatalker.launch.py`` (``record:=true``) all take them from here. This module is
ROS-free: message types are named as rosbag2 stores them (``pkg/msg/Type``).

Names are relative, so a node started in a namespace (or remapped) keeps working; a bag
stores the resolved absolute names (``/avatar/flame_params``).

==================================  ==================================  =======================  ========
topic                               type                                role                     QoS class
==================================  ==================================  =======================  ========
``avatar/flame_params``             ``rsatalker/msg/FlameParams``       ``avatar_flame``         reliable
``avatar/image``                    ``sensor_msgs/msg/Image`` rgb8      ``image``                sensor
``audio/self``                      ``rsatalker/msg/AudioChunk``        ``self_audio``           sensor
``audio/partner``                   ``rsatalker/msg/AudioChunk``        ``partner_audio``        sensor
``partner/flame_params``            ``rsatalker/msg/FlameParams``       ``partner_flame``        sensor
``relationship``                    ``rsatalker/msg/Relationship``      ``relationship``         latched
``avatar/image/compressed``         ``sensor_msgs/msg/CompressedImage`` ``image_compressed``     sensor
``avatar/camera_info``              ``sensor_msgs/msg/CameraInfo``      ``camera_info``          sensor
``partner/camera/image``            ``sensor_msgs/msg/Image``           ``partner_camera``       sensor
``self/camera/image``               ``sensor_msgs/msg/Image``           ``self_camera``          sensor
``training/progress``               ``rsatalker/msg/TrainingProgress``  ``training_progress``    latched
``/tf``                             ``tf2_msgs/msg/TFMessage``          ``tf``                   reliable
``/tf_static``                      ``tf2_msgs/msg/TFMessage``          ``tf_static``            latched
==================================  ==================================  =======================  ========

QoS classes (what :mod:`rsatalker_ros.topics` turns into ROS profiles; docs/ros.md "QoS"):

* ``reliable`` (:data:`RELIABLE`): every message matters. Publishers and subscriptions
  reliable, volatile.
* ``sensor`` (:data:`SENSOR`): a stream where fresh data matters most. Publishers are
  *reliable* with a small depth, so tools at their reliable defaults (rviz,
  web_video_server, foxglove_bridge, ``ros2 topic echo``) receive it; subscriptions are
  *best effort* (the sensor-data profile), so they match reliable and best-effort
  publishers alike (a camera driver, another face tracker, ``audio_common``).
* ``latched`` (:data:`LATCHED`): reliable and transient-local on both ends, so a subscriber
  that joins late (a node still loading its model) gets the last message. A publisher
  must be transient-local too (``ros2 topic pub`` is by default).

Every node lets each publisher and subscription be overridden through the parameters
``qos_overrides./<resolved topic>.<publisher|subscription>.<reliability|history|depth>``
(rclpy's ``QoSOverridingOptions``).

Names are relative, except TF's (``/tf`` and ``/tf_static`` stay global by ROS convention).

The first six are the *session topics* (:data:`SESSION`): what a recording holds and what
``rsatalker evaluate-bag`` reads. Training progress, the avatar's compressed images, camera
info and TF, and the partner camera (the face tracker's input; ``partner/camera/image/compressed`` and ``partner/camera/camera_info``
beside it, image_transport style) are not part of a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from rsatalker_core.errors import RsatalkerError

__all__ = [
    "RELIABLE",
    "SENSOR",
    "LATCHED",
    "BEST_EFFORT",
    "QOS_CLASSES",
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
    "SELF_CAMERA",
    "AVATAR_IMAGE_COMPRESSED",
    "AVATAR_CAMERA_INFO",
    "TF",
    "TF_STATIC",
    "HEAD_JOINT_STATES",
    "HEAD_JOINT_TRAJECTORY",
    "ROBOT_SPEECH",
    "AUDIO_PCM16",
    "ROBOT_TOPICS",
    "SESSION",
    "SESSION_TOPICS",
    "ALL_TOPICS",
    "audio_topic",
    "session_topic_names",
    "resolve_topic",
]

#: QoS class of a topic whose every message matters (the avatar's FLAME frames, TF).
RELIABLE = "reliable"
#: QoS class of a sensor-like stream where fresh data matters most (audio, images, tracked
#: motion): reliable publishers, best-effort subscriptions.
SENSOR = "sensor"
#: QoS class of a state that late joiners need (relationship, training progress,
#: static TF): reliable and transient-local.
LATCHED = "latched"
#: Former name of :data:`SENSOR` (its subscriptions are best effort).
BEST_EFFORT = SENSOR
QOS_CLASSES = (RELIABLE, SENSOR, LATCHED)


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the rsatalker graph.

    Attributes:
        name: relative topic name, e.g. ``"avatar/flame_params"``.
        msgtype: message type as rosbag2 names it, e.g. ``"rsatalker/msg/FlameParams"``.
        role: what the topic carries: ``avatar_flame``, ``image``, ``self_audio``,
            ``partner_audio``, ``partner_flame``, ``relationship`` or ``training_progress``.
        qos: default QoS class, :data:`RELIABLE`, :data:`SENSOR` or :data:`LATCHED`.
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
        return self.name if self.name.startswith("/") else "/" + self.name

    @property
    def reliable(self) -> bool:
        """Whether subscriptions are reliable (``reliable`` and ``latched``; publishers always are)."""
        return self.qos != SENSOR

    @property
    def latched(self) -> bool:
        """Transient-local durability on both ends."""
        return self.qos == LATCHED


AVATAR_FLAME = TopicSpec("avatar/flame_params", "rsatalker/msg/FlameParams", "avatar_flame", RELIABLE,
                         "the avatar's motion [exp 50 | jaw 3 | head 3] (radians), 25 fps")
AVATAR_IMAGE = TopicSpec("avatar/image", "sensor_msgs/msg/Image", "image", SENSOR,
                         "rendered frames (rgb8), stamped with their FLAME frame's stamp")
AUDIO_SELF = TopicSpec("audio/self", "rsatalker/msg/AudioChunk", "self_audio", SENSOR,
                       "the avatar's speech, mono float32 chunks (40 ms by default)")
AUDIO_PARTNER = TopicSpec("audio/partner", "rsatalker/msg/AudioChunk", "partner_audio", SENSOR,
                          "the partner's speech, mono float32 chunks (40 ms by default)")
PARTNER_FLAME = TopicSpec("partner/flame_params", "rsatalker/msg/FlameParams", "partner_flame", SENSOR,
                          "the partner's motion (from a face tracker), 25 fps")
RELATIONSHIP = TopicSpec("relationship", "rsatalker/msg/Relationship", "relationship", LATCHED,
                         "social relationship changes (latched: the last one reaches late subscribers)")
TRAINING_PROGRESS = TopicSpec("training/progress", "rsatalker/msg/TrainingProgress", "training_progress",
                              LATCHED, "training reports (step, losses, checkpoints)")

PARTNER_CAMERA = TopicSpec("partner/camera/image", "sensor_msgs/msg/Image", "partner_camera", SENSOR,
                           "the camera that sees the partner (rgb8, bgr8 or mono8), stamped at capture")
PARTNER_CAMERA_COMPRESSED = TopicSpec(
    "partner/camera/image/compressed", "sensor_msgs/msg/CompressedImage", "partner_camera_compressed", SENSOR,
    "the same camera, jpeg or png (image_transport's compressed transport)")
PARTNER_CAMERA_INFO = TopicSpec("partner/camera/camera_info", "sensor_msgs/msg/CameraInfo", "partner_camera_info",
                                SENSOR, "its intrinsics (optional; without them a 60-degree field of view)")
SELF_CAMERA = TopicSpec("self/camera/image", "sensor_msgs/msg/Image", "self_camera", SENSOR,
                        "a camera that sees the avatar's own speaker (a teleoperator), stamped at capture: "
                        "with the partner camera, a recording rsatalker make-dataset turns into training data")
AVATAR_IMAGE_COMPRESSED = TopicSpec(
    "avatar/image/compressed", "sensor_msgs/msg/CompressedImage", "image_compressed", SENSOR,
    "the rendered frames as JPEG (image_transport's compressed transport), same stamps")
AVATAR_CAMERA_INFO = TopicSpec("avatar/camera_info", "sensor_msgs/msg/CameraInfo", "camera_info", SENSOR,
                               "the render camera's intrinsics (K, P, plumb_bob, no distortion), one per image")
TF = TopicSpec("/tf", "tf2_msgs/msg/TFMessage", "tf", RELIABLE,
               "the avatar's head frame in REP-103 axes, one transform per FLAME frame (25 Hz)")
TF_STATIC = TopicSpec("/tf_static", "tf2_msgs/msg/TFMessage", "tf_static", LATCHED,
                      "the render camera's optical frame (static)")

HEAD_JOINT_STATES = TopicSpec("head/joint_states", "sensor_msgs/msg/JointState", "head_joint_states", RELIABLE,
                              "the head driver's joint commands (position rad, velocity rad/s), one per FLAME frame")
HEAD_JOINT_TRAJECTORY = TopicSpec(
    "head/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", "head_joint_trajectory", RELIABLE,
    "the same as a one-point trajectory for ros2_control's joint_trajectory_controller (remap to "
    "/<controller>/joint_trajectory)")
ROBOT_SPEECH = TopicSpec("robot/speech", "rsatalker/msg/AudioChunk", "robot_speech", SENSOR,
                         "the robot's own speech (its TTS output); role:=robot relays it to audio/self")
AUDIO_PCM16 = TopicSpec("audio/pcm16", "std_msgs/msg/UInt8MultiArray", "pcm16_audio", SENSOR,
                        "mono PCM16 little-endian bytes (audio_common's AudioData payload) for the audio adapter")
#: Topics of a robot body (head driver, robot speech, audio adapter).
ROBOT_TOPICS: Tuple[TopicSpec, ...] = (HEAD_JOINT_STATES, HEAD_JOINT_TRAJECTORY, ROBOT_SPEECH, AUDIO_PCM16)

#: The topics of a recorded session, in recording order.
SESSION: Tuple[TopicSpec, ...] = (AVATAR_FLAME, AVATAR_IMAGE, AUDIO_SELF, AUDIO_PARTNER, PARTNER_FLAME,
                                  RELATIONSHIP)
#: Every topic of the graph.
ALL_TOPICS: Tuple[TopicSpec, ...] = SESSION + (TRAINING_PROGRESS, PARTNER_CAMERA, PARTNER_CAMERA_COMPRESSED,
                                               PARTNER_CAMERA_INFO, SELF_CAMERA, AVATAR_IMAGE_COMPRESSED, AVATAR_CAMERA_INFO,
                                               TF, TF_STATIC) + ROBOT_TOPICS
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


def resolve_topic(name: str, namespace: str = "") -> str:
    """The absolute name of topic ``name`` in ``namespace`` (as a node there resolves it):
    ``resolve_topic("avatar/image", "robot1") == "/robot1/avatar/image"``; an absolute
    ``name`` stays as it is. ``~`` (private) names are not supported.

    Raises:
        RsatalkerError: an empty name, a ``~`` name, or a namespace with ``//`` or ``~``.
    """
    name = str(name).strip()
    ns = str(namespace or "").strip().strip("/")
    if not name or name.startswith("~") or "~" in ns or "//" in ns:
        raise RsatalkerError(f"cannot resolve topic {name!r} in namespace {namespace!r}")
    if name.startswith("/"):
        return name
    return f"/{ns}/{name}" if ns else f"/{name}"


def session_topic_names(absolute: bool = False, namespace: str = "") -> List[str]:
    """Names of the :data:`SESSION` topics: relative, or (``absolute=True``) resolved in
    ``namespace`` (``/avatar/flame_params`` in the root namespace, ``/robot1/avatar/flame_params``
    in ``robot1``), as ``ros2 bag record`` takes them."""
    return [resolve_topic(t.name, namespace) if absolute else t.name for t in SESSION]
