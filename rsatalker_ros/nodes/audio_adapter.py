"""Audio adapter node: other audio messages -> ``rsatalker/AudioChunk`` on ``audio/<role>``.

On a robot the avatar's "self" speech is the robot's own TTS output, published by the
robot's speech stack rather than by rsatalker's audio nodes (``role:=robot`` in
``launch/rsatalker.launch.py``). This node relays it, per ``input_format``:

* ``chunk``: ``rsatalker/AudioChunk`` (e.g. ``robot/speech``), republished with ``role`` set;
* ``pcm16``: ``std_msgs/UInt8MultiArray`` whose ``data`` is signed 16-bit little-endian PCM,
  ``channels`` interleaved channels at ``sample_rate`` Hz (the payload of
  ``audio_common_msgs/AudioData``; e.g. ``audio/pcm16``);
* ``audio_common``: ``audio_common_msgs/AudioData`` (PCM16 as above) with the format taken
  from ``audio_common_msgs/AudioInfo`` on ``info_topic`` when it arrives (``sample_rate``,
  ``channels``; only ``sample_format`` ``S16LE`` is accepted). audio_common_msgs has no
  Jazzy wheel on PyPI (checked: ``ros-jazzy-audio-common-msgs`` does not exist), so this mode
  needs the package from a ROS install (``apt install ros-jazzy-audio-common-msgs``); without
  it the node refuses the mode with a ConfigError naming the package.

Chunks are stamped with the receive time (PCM carries no stamp of its own); a malformed
message is dropped with a throttled warning.

Parameters: ``input_format``, ``input_topic``, ``info_topic``, ``role`` (``self`` or
``partner``), ``sample_rate`` (Hz), ``channels``.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from rsatalker.msg import AudioChunk
from rsatalker_core.errors import ConfigError
from rsatalker_core.io import session_topics as st
from rsatalker_ros import topics
from rsatalker_ros.conversions import (ConversionError, array_to_audio_chunk, audio_chunk_to_array,
                                       pcm16_to_array)
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

NODE_NAME = "audio_adapter"
FORMATS = ("chunk", "pcm16", "audio_common")
CONFIG_PREFIXES: List[str] = []
EXTRA_PARAMS = {
    "input_format": ("chunk", ParamSpec("chunk (rsatalker/AudioChunk), pcm16 (std_msgs/UInt8MultiArray) or "
                                        "audio_common (audio_common_msgs/AudioData)", choices=FORMATS)),
    "role": ("self", ParamSpec("whose speech this is: output on audio/<role>", choices=("self", "partner"))),
    "input_topic": ("", ParamSpec("input topic; empty = robot/speech (chunk) or audio/pcm16")),
    "info_topic": ("audio_info", ParamSpec("audio_common_msgs/AudioInfo topic (audio_common only)")),
    "sample_rate": (16000, ParamSpec("sample rate of PCM16 input, Hz", int_range=(4000, 192000))),
    "channels": (1, ParamSpec("interleaved channels of PCM16 input (averaged to mono)", int_range=(1, 16))),
}


class AudioAdapterNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Raises:
        ConfigError: unknown format or role, a sample rate or channel count out of range, or
            ``audio_common`` without the audio_common_msgs package.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        self.params.declare()
        fmt, role = self.params.value("input_format"), self.params.value("role")
        default_in = st.ROBOT_SPEECH.name if fmt == "chunk" else st.AUDIO_PCM16.name
        in_topic = self.params.value("input_topic") or default_in
        info_topic = self.params.value("info_topic")
        self.sample_rate = int(self.params.value("sample_rate"))
        self.channels = int(self.params.value("channels"))
        if fmt not in FORMATS:
            raise ConfigError(f"audio_adapter: input_format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if role not in ("self", "partner"):
            raise ConfigError(f"audio_adapter: role must be 'self' or 'partner', got {role!r}")
        if not 4000 <= self.sample_rate <= 192000 or not 1 <= self.channels <= 16:
            raise ConfigError(f"audio_adapter: sample_rate {self.sample_rate} Hz / channels {self.channels} "
                              "out of range (4000-192000 Hz, 1-16)")
        self.role = role
        spec = st.audio_topic(role)
        self.pub = self.create_publisher(AudioChunk, spec.name, topics.publisher_qos(spec),
                                         qos_overriding_options=topics.overriding())
        sub_qos = topics.subscription_qos(st.ROBOT_SPEECH)
        if fmt == "chunk":
            self.create_subscription(AudioChunk, in_topic, self._on_chunk, sub_qos,
                                     qos_overriding_options=topics.overriding())
        elif fmt == "pcm16":
            self.create_subscription(UInt8MultiArray, in_topic, self._on_pcm, sub_qos,
                                     qos_overriding_options=topics.overriding())
        else:
            try:
                from audio_common_msgs.msg import AudioData, AudioInfo
            except ImportError as exc:
                raise ConfigError("audio_adapter: input_format 'audio_common' needs audio_common_msgs "
                                  "(apt install ros-jazzy-audio-common-msgs; no PyPI wheel exists); use "
                                  "'pcm16' with a std_msgs/UInt8MultiArray relay instead") from exc
            self.create_subscription(AudioData, in_topic, self._on_pcm, sub_qos)
            self.create_subscription(AudioInfo, info_topic, self._on_info, 10)
        self.relayed = 0
        self.dropped = 0
        self.get_logger().info(f"relaying {fmt} audio from {self.resolve_topic_name(in_topic)} to "
                               f"{self.resolve_topic_name(spec.name)}")

    def _drop(self, why: str) -> None:
        self.dropped += 1
        self.get_logger().warning(f"dropped audio message: {why}", throttle_duration_sec=2.0)

    def _publish(self, samples: np.ndarray, sample_rate: int, frame_id: str = "") -> None:
        try:
            msg = array_to_audio_chunk(samples, sample_rate, stamp_ns=self.get_clock().now().nanoseconds,
                                       role=self.role, frame_id=frame_id)
        except (ConversionError, ValueError) as exc:
            self._drop(str(exc))
            return
        self.pub.publish(msg)
        self.relayed += 1

    def _on_chunk(self, msg: AudioChunk) -> None:
        try:
            samples, sr = audio_chunk_to_array(msg)
        except ConversionError as exc:
            self._drop(str(exc))
            return
        out = array_to_audio_chunk(samples, sr, role=self.role, frame_id=msg.header.frame_id)
        out.header.stamp = msg.header.stamp  # the producer's capture time is kept
        self.pub.publish(out)
        self.relayed += 1

    def _on_pcm(self, msg: Any) -> None:
        try:
            samples = pcm16_to_array(msg.data, self.channels)
        except ConversionError as exc:
            self._drop(str(exc))
            return
        self._publish(samples, self.sample_rate)

    def _on_info(self, msg: Any) -> None:
        fmt = str(getattr(msg, "sample_format", "S16LE") or "S16LE")
        if fmt.upper() != "S16LE":
            self._drop(f"AudioInfo sample_format {fmt!r} is not S16LE")
            return
        self.sample_rate, self.channels = int(msg.sample_rate), max(1, int(msg.channels))


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker audio_adapter --ros-args -p input_format:=pcm16 -p input_topic:=/tts/audio``."""
    return run_node(AudioAdapterNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
