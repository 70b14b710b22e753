"""Video player node: a video file played as a camera and a microphone at real time.

Stands in for the camera that sees the partner (and the partner's microphone) in demos and
tests: the frames go out as ``sensor_msgs/Image`` (``bgr8``, as camera drivers publish) on
``partner/camera/image`` (or ``image_topic``) at the video's own frame rate, for the
``face_tracker`` node, and the video's audio track (16 kHz mono, ``speech.sample_rate``) as
``AudioChunk`` messages of ``streaming.chunk_seconds`` on ``audio/partner`` (or
``audio_topic``; ``publish_audio`` false leaves it out), for the motion node.

Pacing (as :mod:`rsatalker_ros.nodes.audio_player`): one timer catches up whatever is due
against the node clock since playback started. Frame ``k`` is stamped ``t0 + k / fps``
(its capture time) and published once that time has passed; an audio chunk is stamped with
the time of its first sample and published once its last sample's time has passed, so
image and sound keep the lip sync of the file. ``rate`` plays faster or slower.

With ``wait_for_subscribers`` > 0 playback starts only once that many subscribers are
matched on the image topic (the face tracker). When the video ends :attr:`finished`
becomes true (``loop``: it starts over, stamps keep increasing); ``main()`` then exits.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from rsatalker.msg import AudioChunk
from rsatalker_core.errors import ConfigError
from rsatalker_core.io import session_topics as st
from rsatalker_ros import topics
from rsatalker_ros.conversions import array_to_audio_chunk, array_to_image
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

NODE_NAME = "video_player"
CONFIG_PREFIXES = ["speech.sample_rate", "streaming.chunk_seconds"]
EXTRA_PARAMS = {
    "file": ("", ParamSpec("video file to play (anything OpenCV/ffmpeg reads: mp4, mpg, avi, ...)")),
    "image_topic": ("", ParamSpec("image topic; empty = partner/camera/image")),
    "audio_topic": ("", ParamSpec("audio topic; empty = audio/partner")),
    "publish_audio": (True, ParamSpec("also publish the video's audio track (when it has one)")),
    "frame_id": ("partner_camera", ParamSpec("header.frame_id of the images")),
    "loop": (False, ParamSpec("start over at the end of the video")),
    "rate": (1.0, ParamSpec("playback speed factor (1 = real time)", float_range=(0.1, 10.0))),
    "wait_for_subscribers": (
        0,
        ParamSpec("start once this many subscribers of the image topic are matched (0 = at once)",
                  int_range=(0, 100)),
    ),
}


class VideoPlayerNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Raises:
        ConfigError: no ``file`` given, or a file OpenCV cannot open or that holds no frame.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        import cv2

        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        cfg = self.params.declare()
        p = self.params.value
        path = p("file")
        if not path:
            raise ConfigError(f"{node_name}: parameter 'file' is empty: name a video file to play")
        if not os.path.isfile(path):
            raise ConfigError(f"{node_name}: no such video file: {path}")
        self.path = path
        self._cap = cv2.VideoCapture(path)
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok:
            raise ConfigError(f"{path}: cannot read a video frame (not a video, or no codec)")
        self._next_frame: Optional[np.ndarray] = first
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 1.0 <= self.fps <= 240.0:
            self.get_logger().warning(f"{path}: frame rate {self.fps} not usable; assuming 25 fps")
            self.fps = 25.0
        self.rate = float(p("rate"))
        self.loop = bool(p("loop"))
        self.frame_id = p("frame_id")
        self.source = os.path.basename(path)
        self.samples: Optional[np.ndarray] = None
        self.sample_rate = int(cfg.speech.sample_rate)
        if p("publish_audio"):
            from rsatalker_core.io.video import has_audio_stream, read_audio_track

            if has_audio_stream(path):
                self.samples = read_audio_track(path, self.sample_rate)
            else:
                self.get_logger().warning(f"{path} has no audio track: images only")
        self.chunk = max(1, int(round(cfg.streaming.chunk_seconds * self.sample_rate)))
        self.frames_published = 0
        self.chunks_published = 0
        self.finished = False
        self._video_done = False
        self._sent = 0  # audio samples published (across loops)
        self._frames_base = 0  # frames of earlier loops
        self._t0_ns: Optional[int] = None
        self._wait_for = int(p("wait_for_subscribers"))
        self._img_pub = self.create_publisher(Image, p("image_topic") or st.PARTNER_CAMERA.name,
                                              topics.publisher_qos(st.PARTNER_CAMERA),
                                              qos_overriding_options=topics.overriding())
        self._audio_pub = None
        if self.samples is not None and self.samples.size:
            self._audio_pub = self.create_publisher(AudioChunk, p("audio_topic") or st.AUDIO_PARTNER.name,
                                                    topics.publisher_qos(st.AUDIO_PARTNER),
                                                    qos_overriding_options=topics.overriding())
        period = min(1.0 / self.fps, cfg.streaming.chunk_seconds) / self.rate
        self._timer = self.create_timer(period / 2, self._tick)
        h, w = first.shape[:2]
        self.get_logger().info(
            f"playing {path} ({w}x{h} at {self.fps:g} fps) on {self._img_pub.topic_name}"
            + (f", its audio on {self._audio_pub.topic_name}" if self._audio_pub else "")
            + f", rate x{self.rate:g}" + (", looping" if self.loop else ""))

    def _read(self) -> Optional[np.ndarray]:
        frame, self._next_frame = self._next_frame, None
        if frame is None:
            ok, frame = self._cap.read()
            if not ok:
                return None
        return frame

    def _rewind(self) -> None:
        import cv2

        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def _tick(self) -> None:
        if self.finished:
            return
        now_ns = self.get_clock().now().nanoseconds
        if self._t0_ns is None:
            if self._img_pub.get_subscription_count() < self._wait_for:
                return
            self._t0_ns = now_ns
        elapsed = (now_ns - self._t0_ns) * 1e-9 * self.rate  # media seconds
        while not self._video_done and self.frames_published / self.fps <= elapsed:
            frame = self._read()
            if frame is None and self.loop and self.frames_published > self._frames_base:
                self._frames_base = self.frames_published
                self._rewind()
                frame = self._read()
            if frame is None:
                self._video_done = True
                break
            stamp = self._t0_ns + int(round(self.frames_published / self.fps / self.rate * 1e9))
            self._img_pub.publish(array_to_image(frame[..., ::-1], stamp, self.frame_id, encoding="bgr8"))
            self.frames_published += 1
        if self._audio_pub is not None:
            n = self.samples.size
            due = int(elapsed * self.sample_rate)
            while self._sent + self.chunk <= due and (self.loop or self._sent < n):
                pos = self._sent % n
                piece = self.samples[pos : min(pos + self.chunk, n)]
                stamp = self._t0_ns + int(round(self._sent * 1e9 / (self.sample_rate * self.rate)))
                self._audio_pub.publish(array_to_audio_chunk(piece, self.sample_rate, stamp, role="partner",
                                                             frame_id=self.source))
                self.chunks_published += 1
                self._sent += piece.size
        audio_done = self._audio_pub is None or self._sent >= self.samples.size
        if self._video_done and audio_done and not self.loop:
            self.finished = True
            self._timer.cancel()
            self.get_logger().info(f"finished playing {self.source}: {self.frames_published} frames, "
                                   f"{self.chunks_published} audio chunks")

    def destroy_node(self) -> None:
        self._cap.release()
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker video_player --ros-args -p file:=partner.mp4``.

    Exits when the video has been played (never with ``loop``).
    """
    return run_node(VideoPlayerNode, NODE_NAME, args, until=lambda node: node.finished)


if __name__ == "__main__":
    raise SystemExit(main())
