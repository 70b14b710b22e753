"""Microphone node: a sound card input (sounddevice / PortAudio) -> AudioChunk messages.

Opens a mono float32 input stream at ``speech.sample_rate`` with blocks of
``streaming.chunk_seconds`` and publishes each block on ``audio/<role>`` (or ``topic``)
from PortAudio's callback thread. ``header.stamp`` is the capture time of the block's
first sample, estimated as "now minus the block length" on the node clock.

No usable input device (PortAudio's ``Error querying device -1`` on machines without a
sound card, or ``OSError`` when the PortAudio library itself is missing): the node logs
ONE error saying so, keeps running (so a launch file's other nodes stay up), and retries
quietly every ``retry_seconds`` (0 = never) in case a device appears.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
from rclpy.node import Node

from rsatalker.msg import AudioChunk
from rsatalker_core.io import session_topics as st
from rsatalker_ros import topics
from rsatalker_ros.conversions import ConversionError, array_to_audio_chunk
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

NODE_NAME = "audio_capture"
CONFIG_PREFIXES = ["speech.sample_rate", "streaming.chunk_seconds"]
EXTRA_PARAMS = {
    "role": ("self", ParamSpec("whose speech this microphone hears; publishes on audio/<role>",
                               choices=("self", "partner"))),
    "topic": ("", ParamSpec("topic to publish on; empty = audio/<role>")),
    "input_device": ("", ParamSpec("PortAudio input device: index or name substring; empty = default")),
    "retry_seconds": (5.0, ParamSpec("seconds between attempts to open the device; 0 = never retry",
                                     float_range=(0.0, 3600.0))),
}


class AudioCaptureNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Attributes:
        stream: the open ``sounddevice.InputStream``, or ``None`` while no device works.
        error: the last device error (``None`` once a stream is open).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        cfg = self.params.declare()
        p = self.params.value
        self.role = p("role")
        self.sample_rate = int(cfg.speech.sample_rate)
        self.blocksize = max(1, int(round(cfg.streaming.chunk_seconds * self.sample_rate)))
        device = p("input_device")
        self.device: Optional[Any] = int(device) if device.strip().isdigit() else (device or None)
        self.stream = None
        self.error: Optional[str] = None
        self.chunks_published = 0
        self._reported = False
        topic = p("topic") or topics.audio_topic(self.role)
        self._pub = self.create_publisher(AudioChunk, topic, topics.publisher_qos(st.AUDIO_SELF),
                                          qos_overriding_options=topics.overriding())  # reliable: tools match
        self._open()
        retry = float(p("retry_seconds"))
        self._retry_timer = self.create_timer(retry, self._retry) if retry > 0 and self.stream is None else None

    def _open(self) -> bool:
        try:
            import sounddevice as sd  # OSError here when libportaudio2 is missing

            stream = sd.InputStream(
                device=self.device,
                channels=1,
                samplerate=self.sample_rate,
                blocksize=self.blocksize,
                dtype="float32",
                callback=self._on_block,
            )
            stream.start()
        except Exception as exc:  # sd.PortAudioError, OSError, ValueError (bad device name)
            self.error = f"{type(exc).__name__}: {exc}"
            if not self._reported:
                self._reported = True
                self.get_logger().error(
                    f"no usable audio input device ({self.error}); publishing nothing on "
                    f"{self._pub.topic_name}. Connect a microphone or set 'input_device' "
                    "(or play a file with audio_player). The node keeps running"
                    + (" and retries quietly." if float(self.params.value("retry_seconds")) > 0 else ".")
                )
            else:
                self.get_logger().debug(f"audio input still unavailable: {self.error}")
            return False
        self.stream, self.error = stream, None
        self.get_logger().info(
            f"capturing '{stream.device}' at {self.sample_rate} Hz in {self.blocksize}-sample chunks "
            f"as '{self.role}' on {self._pub.topic_name}"
        )
        return True

    def _retry(self) -> None:
        if self.stream is None and self._open() and self._retry_timer is not None:
            self._retry_timer.cancel()

    def _on_block(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio callback: ``indata`` is ``[frames, 1]`` float32."""
        if status:
            self.get_logger().warning(f"audio input status: {status}", throttle_duration_sec=5.0)
        stamp = self.get_clock().now().nanoseconds - int(frames * 1e9 / self.sample_rate)
        try:
            msg = array_to_audio_chunk(indata[:, 0].copy(), self.sample_rate, max(0, stamp), self.role,
                                       frame_id=str(self.device or "default"))
        except ConversionError as exc:
            self.get_logger().warning(f"dropped audio block: {exc}", throttle_duration_sec=5.0)
            return
        self._pub.publish(msg)
        self.chunks_published += 1

    def destroy_node(self) -> None:
        """Close the audio stream, then destroy the node."""
        if self.stream is not None:
            try:
                self.stream.stop()
                self.stream.close()
            except Exception:  # already closed by PortAudio
                pass
            self.stream = None
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker audio_capture --ros-args -p role:=self``."""
    return run_node(AudioCaptureNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
