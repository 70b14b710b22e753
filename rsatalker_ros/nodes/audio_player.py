"""Audio player node: an audio file -> AudioChunk messages at real-time pace.

Stands in for a microphone (tests, demos, replaying recorded conversations). The file is
read with :func:`rsatalker_core.audio.load_audio` (any libsndfile format, down-mixed to
mono, resampled to ``speech.sample_rate``), cut to ``[start_seconds, start_seconds +
duration_seconds)``, and published on ``audio/<role>`` (or ``topic``) in chunks of
``streaming.chunk_seconds``.

Pacing: a timer every chunk period (divided by ``rate``) publishes every chunk that is due
against the node clock since playback started, so missed ticks are caught up and the long
run rate is exactly real time x ``rate``. Each chunk's ``header.stamp`` is the time its
first sample is due, i.e. ``t_start + samples_before / (sample_rate * rate)``.

With ``wait_for_subscribers`` > 0 playback starts only once that many subscribers are
matched (so the beginning is not published to nobody).

When the segment ends the node stops publishing and :attr:`finished` becomes true; with
``loop`` it starts over (stamps keep increasing). ``main()`` exits once finished.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from rclpy.node import Node

from rsatalker.msg import AudioChunk
from rsatalker_core.speech.audio import load_audio
from rsatalker_core.errors import ConfigError
from rsatalker_core.io import session_topics as st
from rsatalker_ros import topics
from rsatalker_ros.conversions import array_to_audio_chunk
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

NODE_NAME = "audio_player"
CONFIG_PREFIXES = ["speech.sample_rate", "streaming.chunk_seconds"]
EXTRA_PARAMS = {
    "file": ("", ParamSpec("audio file to play (wav, flac, ogg; any rate, mono or stereo)")),
    "role": ("self", ParamSpec("whose speech this is; publishes on audio/<role>", choices=("self", "partner"))),
    "topic": ("", ParamSpec("topic to publish on; empty = audio/<role>")),
    "start_seconds": (0.0, ParamSpec("offset into the file, seconds", float_range=(0.0, 1.0e6))),
    "duration_seconds": (0.0, ParamSpec("length to play, seconds; 0 = to the end", float_range=(0.0, 1.0e6))),
    "loop": (False, ParamSpec("start over at the end of the segment")),
    "rate": (1.0, ParamSpec("playback speed factor (1 = real time)", float_range=(0.1, 10.0))),
    "wait_for_subscribers": (
        0,
        ParamSpec("start playing once this many subscribers are matched (0 = at once)", int_range=(0, 100)),
    ),
}


class AudioPlayerNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Raises:
        ConfigError: no ``file`` given, or the segment is empty.
        AudioError: the file is missing or not readable audio.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        cfg = self.params.declare()
        p = self.params.value
        path = p("file")
        if not path:
            raise ConfigError(f"{node_name}: parameter 'file' is empty: name an audio file to play")
        wav, sr = load_audio(path, target_sr=cfg.speech.sample_rate)
        start = int(round(p("start_seconds") * sr))
        stop = len(wav) if p("duration_seconds") <= 0 else start + int(round(p("duration_seconds") * sr))
        self.samples = wav[start:stop]
        if self.samples.size == 0:
            raise ConfigError(
                f"{path}: nothing to play from {p('start_seconds')} s (file lasts {len(wav) / sr:.2f} s)"
            )
        self.sample_rate = sr
        self.role = p("role")
        self.loop = bool(p("loop"))
        self.rate = float(p("rate"))
        self.chunk = max(1, int(round(cfg.streaming.chunk_seconds * sr)))
        self.source = os.path.basename(path)
        self.finished = False
        self.chunks_published = 0
        self._sent = 0  # samples published since playback started (across loops)
        self._t0_ns: Optional[int] = None
        self._wait_for = int(p("wait_for_subscribers"))
        topic = p("topic") or topics.audio_topic(self.role)
        self._pub = self.create_publisher(AudioChunk, topic, topics.publisher_qos(st.AUDIO_SELF),
                                          qos_overriding_options=topics.overriding())  # reliable: tools match
        period = cfg.streaming.chunk_seconds / self.rate
        self._timer = self.create_timer(period, self._tick)
        self.get_logger().info(
            f"playing {path} [{start / sr:.2f}, {(start + self.samples.size) / sr:.2f}) s as '{self.role}' on "
            f"{self._pub.topic_name}: {self.chunk}-sample chunks at {sr} Hz, rate x{self.rate:g}"
            + (", looping" if self.loop else "")
        )

    def _tick(self) -> None:
        if self.finished:
            return
        now_ns = self.get_clock().now().nanoseconds
        if self._t0_ns is None:
            if self._pub.get_subscription_count() < self._wait_for:
                return
            self._t0_ns = now_ns
        # Like a microphone, a chunk goes out once its last sample's time has passed.
        due = int((now_ns - self._t0_ns) * 1e-9 * self.sample_rate * self.rate)
        n = self.samples.size
        while self._sent + self.chunk <= due:
            pos = self._sent % n
            piece = self.samples[pos : min(pos + self.chunk, n)]
            stamp = self._t0_ns + int(round(self._sent * 1e9 / (self.sample_rate * self.rate)))
            self._pub.publish(
                array_to_audio_chunk(piece, self.sample_rate, stamp, role=self.role, frame_id=self.source)
            )
            self.chunks_published += 1
            self._sent += piece.size
            if not self.loop and self._sent >= n:
                self.finished = True
                self._timer.cancel()
                self.get_logger().info(
                    f"finished playing {self.source}: {self.chunks_published} chunks, {n / self.sample_rate:.2f} s"
                )
                return


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker audio_player --ros-args -p file:=speech.wav -p role:=partner``.

    Exits when the file has been played (never with ``loop``).
    """
    return run_node(AudioPlayerNode, NODE_NAME, args, until=lambda node: node.finished)


if __name__ == "__main__":
    raise SystemExit(main())
