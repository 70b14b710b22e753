"""Recorder node: collects the avatar's FLAME parameters and images, writes npz + mp4, and
(with ``bag_path``) records the session's topics to a rosbag2 bag (MCAP or sqlite3).

Subscribes ``avatar/flame_params`` and ``avatar/image`` (names and types from
:mod:`rsatalker_core.io.session_topics`, QoS from :mod:`rsatalker_ros.topics`). On
:meth:`RecorderNode.save` (called by the bringup, and by ``destroy_node`` when ``output_dir``
is set) it writes:

* ``motion.npz`` — DualTalk layout (``exp (T, 50)``, ``pose (T, 6)``) via
  :func:`rsatalker_core.io.motion_npz.save_motion_npz`, frames ordered by ``frame_index``
  (a frame that never arrived holds the previous one);
* ``avatar.mp4`` — one video frame per motion frame at 25 fps. Images are matched to frames
  by their stamp (the render node carries the FLAME stamp through); frames the renderer
  skipped hold the last rendered image, so the video keeps real time and stays in sync with
  the audio. Images are never held: each is encoded as it arrives (:class:`LiveVideo`, an
  H.264 stream in a temporary file) and :meth:`RecorderNode.save` finishes that file and muxes
  the audio in, so memory stays flat over hours (it was ~2.8 GB per hour at 256²);
* ``summary.json`` — counts, the received FLAME rate (fps) and latency statistics
  (receive time minus ``source_stamp`` / ``header.stamp``, milliseconds).

Bag recording (``bag_path`` non-empty; like ``ros2 bag record -s mcap -o <bag_path>``, for
machines without rosbag2): every topic in ``bag_topics`` (default: avatar FLAME parameters
and images, self and partner audio, partner FLAME parameters, relationship) is subscribed
with ``raw=True`` and the serialized CDR bytes are written unchanged (header stamps intact)
with their receive time, through :class:`rsatalker_ros.bag_recorder.BagWriter`. The bag
carries every message definition, so rosbag2 tools and ``rsatalker evaluate-bag`` read it.
A bag that cannot be created or written is logged and the node keeps running; the bag is
finished in :meth:`RecorderNode.destroy_node` (also on Ctrl-C). The bag's pending chunk is
flushed to disk every ``bag_flush_period`` seconds (0.25 by default), so a recorder killed
with SIGKILL leaves an unfinished MCAP file that ``rsatalker evaluate-bag`` still reads up to
the last flush (docs/ros.md, "Recording").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from rsatalker.msg import AudioChunk, FlameParams
from rsatalker.msg import Relationship as RelationshipMsg
from rsatalker_core.config import FPS
from rsatalker_core.errors import RsatalkerError
from rsatalker_core.io.session_topics import SESSION, SESSION_TOPICS
from rsatalker_ros import topics
from rsatalker_ros.bag_recorder import STORAGES, BagWriter
from rsatalker_ros.conversions import ConversionError, flame_params_to_array, image_to_array, time_to_ns
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParamSpec, ParameterSet

NODE_NAME = "recorder"
CONFIG_PREFIXES: List[str] = []
EXTRA_PARAMS = {
    "output_dir": ("", ParamSpec("directory for motion.npz, avatar.mp4, summary.json; empty = keep in memory")),
    "bag_path": ("", ParamSpec("rosbag2 directory to record the session topics into (must not exist); "
                               "empty = no bag")),
    "bag_storage": ("mcap", ParamSpec("rosbag2 storage plugin of the bag", choices=STORAGES)),
    "bag_flush_period": (0.25, ParamSpec("seconds between flushes of the bag to disk (what survives a kill)",
                                        float_range=(0.05, 1.0))),
    "bag_topics": ([t.name for t in SESSION], ParamSpec("topics recorded into the bag (relative names, of: "
                                                   + ", ".join(SESSION_TOPICS) + ")")),
}

#: Relative topic -> (message class, subscription QoS) of everything the recorder can take:
#: every session topic (a test checks the keys). Best-effort subscriptions for best-effort
#: publishers; reliable FLAME, so no frame is lost; a volatile relationship subscription
#: matches latched and volatile publishers alike.
TOPIC_SPECS = {
    topics.AVATAR_FLAME: (FlameParams, topics.FLAME_QOS),
    topics.AVATAR_IMAGE: (Image, topics.IMAGE_QOS),
    topics.AUDIO_SELF: (AudioChunk, topics.AUDIO_QOS),
    topics.AUDIO_PARTNER: (AudioChunk, topics.AUDIO_QOS),
    topics.PARTNER_FLAME: (FlameParams, topics.FLAME_QOS),
    topics.RELATIONSHIP: (RelationshipMsg, topics.RELATIONSHIP_SUB_QOS),
}


#: Images whose FLAME frame has not arrived yet, kept at most (1 s at 25 fps).
PENDING_IMAGES = 25
#: Stamp -> frame index entries kept for matching images to frames (20 s at 25 fps).
INDEX_MEMORY = 500


class LiveVideo:
    """The avatar video, encoded as images arrive: one frame per motion frame, in frame order.

    Images come with their frame index (:meth:`add`); a frame without an image holds the
    previous image (the first image also covers the frames before it, from ``first_index``);
    an image for a frame already written (late) is dropped and counted. Frames go straight to
    an H.264 stream (:class:`rsatalker_core.io.video.VideoWriter`, ``veryfast`` preset) in a
    temporary file under ``folder``; nothing but the last image is kept in memory.

    Args:
        folder: where the temporary stream lives (the output directory, or a temporary one).
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.first_index: Optional[int] = None  # motion frame index of video frame 0
        self.next_index: Optional[int] = None  # motion frame index of the next video frame
        self.frames = 0
        self.late_images = 0
        self._last: Optional[np.ndarray] = None
        self._writer = None
        self._path = os.path.join(folder, f".recorder-{os.getpid()}-{id(self):x}.mp4")

    def add(self, index: int, image: np.ndarray, first_index: int) -> None:
        """Write ``image`` ([H, W, 3] uint8) as motion frame ``index``; the first call starts
        the video at ``first_index`` (<= ``index``: the first motion frame received).

        Raises:
            VideoError: the image's size differs from the first, or ffmpeg failed.
        """
        from rsatalker_core.io.video import VideoWriter

        if self.next_index is None:
            self.first_index = self.next_index = min(first_index, index)
            self._writer = VideoWriter(self._path, fps=FPS, preset="veryfast")
        if index < self.next_index:
            self.late_images += 1
            return
        hold = self._last if self._last is not None else image
        while self.next_index < index:
            self._write(hold)
        self._write(image)
        self._last = image

    def _write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)
        self.frames += 1
        self.next_index += 1

    def finish(self, path: str, last_index: int, audio: Optional[np.ndarray] = None,
               sample_rate: Optional[int] = None) -> Optional[str]:
        """Hold the last image up to motion frame ``last_index``, finish the stream and move it
        to ``path`` with ``audio`` ([S] float32, sample 0 = start of video frame 0) muxed in as
        AAC. Returns ``path``, or ``None`` when no image ever arrived.

        Raises:
            VideoError: ffmpeg failed.
        """
        if self._writer is None:
            return None
        while self.next_index <= last_index:
            self._write(self._last)
        self._writer.close()
        self._writer = None
        if audio is None or not sample_rate or not np.asarray(audio).size:
            shutil.move(self._path, path)
            return path
        _mux_audio(self._path, path, np.asarray(audio, np.float32), int(sample_rate))
        os.remove(self._path)
        return path

    def abort(self) -> None:
        """Stop the encoder and delete the temporary stream."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if os.path.exists(self._path):
            os.remove(self._path)


def _mux_audio(video: str, out: str, audio: np.ndarray, sample_rate: int) -> None:
    """Copy ``video``'s H.264 stream into ``out`` with ``audio`` (mono float, Hz) as AAC.

    Raises:
        VideoError: ffmpeg failed (``out`` is not written).
    """
    import soundfile as sf

    from rsatalker_core.io.video import VideoError, ffmpeg_exe

    fd, wav = tempfile.mkstemp(suffix=".wav", dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    tmp = out + ".part.mp4"
    try:
        sf.write(wav, audio, sample_rate, subtype="FLOAT")
        cmd = [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-i", video, "-i", wav,
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-movflags", "+faststart",
               "-f", "mp4", tmp]
        res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if res.returncode != 0:
            raise VideoError(f"{out}: muxing the audio failed: {res.stderr.decode('utf-8', 'replace')[-400:]}")
        os.replace(tmp, out)
    finally:
        for f in (wav, tmp):
            if os.path.exists(f):
                os.remove(f)


class RecorderNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        self.params.declare()
        self.output_dir = self.params.value("output_dir")
        self._lock = threading.Lock()
        self.motion: Dict[int, np.ndarray] = {}  # frame_index -> [56]
        # header stamp ns -> frame_index, the last INDEX_MEMORY frames
        self.index_by_stamp: "OrderedDict[int, int]" = OrderedDict()
        # images whose FLAME frame has not arrived yet: stamp ns -> [H, W, 3]
        self.pending_images: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self.image_count = 0
        self._video_dir = self.output_dir or tempfile.mkdtemp(prefix="rsatalker-recorder-")
        self._own_video_dir = not self.output_dir
        self.video: Optional[LiveVideo] = None
        self.video_error: Optional[str] = None
        self.relationships: Dict[int, str] = {}
        self.flame_receipt_s: List[float] = []  # monotonic receive times
        self.latency_source_ms: List[float] = []
        self.latency_media_ms: List[float] = []
        self.image_receipt_s: List[float] = []  # monotonic receive times of the images
        self.latency_image_ms: List[float] = []  # image receipt minus its stamp (media time)
        self.saved = False
        self.bag: Optional[BagWriter] = self._open_bag()
        bag_topics = set(self._bag_topics) if self.bag is not None else set()
        if self.bag is not None:  # a quiet topic's last messages reach the disk too
            self.create_timer(float(self.params.value("bag_flush_period")), self.bag.flush)
        handlers = {topics.AVATAR_FLAME: self._on_flame, topics.AVATAR_IMAGE: self._on_image}
        for name, (msg_type, qos) in TOPIC_SPECS.items():
            if name not in bag_topics and name not in handlers:
                continue
            if name in bag_topics:  # raw: the bytes go to the bag, the handler deserializes
                full = self.resolve_topic_name(name)  # namespace and remappings applied
                try:
                    self.bag.add_topic(full, SESSION_TOPICS[name],
                                       reliable=qos.reliability == ReliabilityPolicy.RELIABLE, depth=qos.depth)
                except RsatalkerError as exc:
                    self.get_logger().error(f"not recording {full}: {exc}")
                self.create_subscription(msg_type, name, self._raw_callback(full, msg_type, handlers.get(name)),
                                         qos, raw=True)
            else:
                self.create_subscription(msg_type, name, handlers[name], qos)

    # ------------------------------------------------------------------ bag

    def _open_bag(self) -> Optional[BagWriter]:
        path = self.params.value("bag_path")
        self._bag_topics: List[str] = []
        if not path:
            return None
        for name in self.params.value("bag_topics"):
            if name.lstrip("/") in SESSION_TOPICS:
                self._bag_topics.append(name.lstrip("/"))
            else:
                self.get_logger().error(f"bag_topics: '{name}' is not one of {', '.join(SESSION_TOPICS)}; not recorded")
        try:
            bag = BagWriter(path, self.params.value("bag_storage"), on_error=self._bag_error,
                            flush_period_s=float(self.params.value("bag_flush_period")))
        except RsatalkerError as exc:
            self.get_logger().error(f"not recording a bag: {exc}")
            return None
        self.get_logger().info(f"recording {', '.join(self._bag_topics)} to {path} ({bag.storage})")
        return bag

    def _bag_error(self, message: str) -> None:
        self.get_logger().error(message, throttle_duration_sec=2.0)

    def _receive_ns(self, info: Any) -> int:
        """The middleware's receive time when the node clock is system time, else now (ns)."""
        if isinstance(info, dict) and not self.get_clock().ros_time_is_active:
            t = int(info.get("received_timestamp", 0) or 0)
            if t > 0:
                return t
        return self.get_clock().now().nanoseconds

    def _raw_callback(self, topic: str, msg_type: type, handler):
        def callback(data: bytes, info: Any) -> None:  # two arguments: rclpy passes the message info
            now_ns = self._receive_ns(info)
            bag = self.bag
            if bag is not None:
                bag.write(topic, now_ns, data)
            if handler is not None:
                try:
                    msg = deserialize_message(data, msg_type)
                except Exception as exc:  # malformed CDR: log, keep running
                    self.get_logger().warning(f"dropped undecodable {topic} message: {exc}", throttle_duration_sec=2.0)
                    return
                handler(msg, now_ns)

        return callback

    # ------------------------------------------------------------------ callbacks

    def _on_flame(self, msg: FlameParams, now_ns: Optional[int] = None) -> None:
        if now_ns is None:
            now_ns = self.get_clock().now().nanoseconds
        try:
            m = flame_params_to_array(msg)
        except ConversionError as exc:
            self.get_logger().warning(f"dropped FLAME parameters: {exc}", throttle_duration_sec=2.0)
            return
        stamp = time_to_ns(msg.header.stamp)
        with self._lock:
            self.motion[int(msg.frame_index)] = m
            self.index_by_stamp[stamp] = int(msg.frame_index)
            while len(self.index_by_stamp) > INDEX_MEMORY:
                self.index_by_stamp.popitem(last=False)
            img = self.pending_images.pop(stamp, None)
            if img is not None:
                self._place_image(int(msg.frame_index), img)
            self.relationships[int(msg.frame_index)] = msg.relationship
            self.flame_receipt_s.append(time.monotonic())
            src = time_to_ns(msg.source_stamp)
            if src > 0:
                self.latency_source_ms.append((now_ns - src) * 1e-6)
            if stamp > 0:
                self.latency_media_ms.append((now_ns - stamp) * 1e-6)

    def _on_image(self, msg: Image, now_ns: Optional[int] = None) -> None:
        try:
            img = image_to_array(msg)
        except ConversionError as exc:
            self.get_logger().warning(f"dropped image: {exc}", throttle_duration_sec=2.0)
            return
        if now_ns is None:
            now_ns = self.get_clock().now().nanoseconds
        stamp = time_to_ns(msg.header.stamp)
        with self._lock:
            self.image_count += 1
            self.image_receipt_s.append(time.monotonic())
            if stamp > 0:
                self.latency_image_ms.append((now_ns - stamp) * 1e-6)
            index = self.index_by_stamp.get(stamp)
            if index is None:  # its FLAME frame is still on the way
                self.pending_images[stamp] = img
                while len(self.pending_images) > PENDING_IMAGES:
                    self.pending_images.popitem(last=False)
                return
            self._place_image(index, img)

    def _place_image(self, index: int, img: np.ndarray) -> None:
        """Encode ``img`` as frame ``index`` (lock held). A failing encoder is logged once."""
        from rsatalker_core.io.video import VideoError

        if self.video_error is not None:
            return
        if self.video is None:
            self.video = LiveVideo(self._video_dir)
        try:
            self.video.add(index, img, first_index=min(self.motion) if self.motion else index)
        except VideoError as exc:
            self.video_error = str(exc)
            self.video.abort()
            self.get_logger().error(f"avatar video stopped: {exc}")

    # ------------------------------------------------------------------ results

    def motion_array(self) -> np.ndarray:
        """Received motion ``[T, 56]`` for frame indices ``first..last`` (gaps hold the previous)."""
        with self._lock:
            if not self.motion:
                return np.zeros((0, 56), dtype=np.float32)
            idx = sorted(self.motion)
            out, last = [], self.motion[idx[0]]
            for k in range(idx[0], idx[-1] + 1):
                last = self.motion.get(k, last)
                out.append(last)
        return np.stack(out).astype(np.float32)

    def summary(self) -> Dict[str, Any]:
        """Counts, received FLAME and image rates (fps) and latency percentiles (ms).

        ``latency_after_media_time_ms`` is each FLAME message's receipt minus its stamp (the
        capture time of the frame's first audio sample); ``image_latency_after_media_time_ms``
        the same for each image (rendered from that frame); ``image_fps`` the received image
        rate between the first and the last image.
        """

        def rate(t: List[float]) -> float:
            return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

        with self._lock:
            fps = rate(self.flame_receipt_s)
            idx = sorted(self.motion)

            def stats(v: List[float]) -> Dict[str, float]:
                if not v:
                    return {}
                a = np.asarray(v)
                return {"mean": float(a.mean()), "p50": float(np.median(a)), "p95": float(np.percentile(a, 95))}

            return {
                "flame_messages": len(self.motion),
                "first_frame": idx[0] if idx else None,
                "last_frame": idx[-1] if idx else None,
                "missing_frames": (idx[-1] - idx[0] + 1 - len(idx)) if idx else 0,
                "images": self.image_count,
                "video_frames": self.video.frames if self.video is not None else 0,
                "late_images": self.video.late_images if self.video is not None else 0,
                "flame_fps": fps,
                "relationships": sorted(set(self.relationships.values())),
                "latency_after_source_stamp_ms": stats(self.latency_source_ms),
                "latency_after_media_time_ms": stats(self.latency_media_ms),
                "image_fps": rate(self.image_receipt_s),
                "image_latency_after_media_time_ms": stats(self.latency_image_ms),
            }

    def save(
        self,
        output_dir: Optional[str] = None,
        audio: Optional[np.ndarray] = None,  # [S] float32, the avatar's speech from frame 0
        sample_rate: Optional[int] = None,
    ) -> Dict[str, str]:
        """Write motion.npz, avatar.mp4 (when images arrived) and summary.json.

        Args:
            output_dir: defaults to the ``output_dir`` parameter.
            audio: the self speech, sample 0 = start of frame 0; muxed into the video.
            sample_rate: of ``audio``, Hz.

        Returns:
            ``{"motion": path, "video": path, "summary": path}`` for the files written.
        """
        from rsatalker_core.io.motion_npz import save_motion_npz

        out_dir = output_dir or self.output_dir
        if not out_dir:
            return {}
        os.makedirs(out_dir, exist_ok=True)
        written: Dict[str, str] = {}
        motion = self.motion_array()
        if len(motion):
            written["motion"] = os.path.join(out_dir, "motion.npz")
            save_motion_npz(written["motion"], motion)
        with self._lock:
            video = self.video
            if video is not None and self.video_error is None and len(motion):
                last = max(self.motion)
                seg = None
                if audio is not None and sample_rate:
                    spf = sample_rate // FPS
                    seg = np.asarray(audio, dtype=np.float32)[video.first_index * spf: (last + 1) * spf]
                path = video.finish(os.path.join(out_dir, "avatar.mp4"), last, audio=seg, sample_rate=sample_rate)
                if path is not None:
                    written["video"] = path
            elif video is not None:
                video.abort()
        written["summary"] = os.path.join(out_dir, "summary.json")
        with open(written["summary"], "w", encoding="utf-8") as fh:
            json.dump(self.summary(), fh, indent=2)
        self.saved = True
        self.get_logger().info(f"wrote {', '.join(written.values())}")
        return written

    def close_bag(self) -> None:
        """Finish the bag (MCAP index and summary, metadata.yaml) so it is readable."""
        bag, self.bag = self.bag, None
        if bag is None:
            return
        try:
            bag.close()
            counts = ", ".join(f"{n} {t}" for t, n in bag.counts.items())
            self.get_logger().info(f"wrote bag {bag.path}: {counts}" + (f"; {bag.errors} write errors" if bag.errors else ""))
        except RsatalkerError as exc:
            self.get_logger().error(str(exc))

    def destroy_node(self) -> None:
        """Write the outputs (when ``output_dir`` is set and not yet saved), finish the bag,
        then destroy."""
        if self.output_dir and not self.saved:
            try:
                self.save()
            except Exception as exc:  # never lose the shutdown over a write error
                self.get_logger().error(f"could not write recordings: {type(exc).__name__}: {exc}")
        # the subscriptions go first, so no callback writes while the bag is finished
        for sub in list(self.subscriptions):
            self.destroy_subscription(sub)
        self.close_bag()
        if self.video is not None:  # the temporary stream, when never finished
            self.video.abort()
        if self._own_video_dir:
            shutil.rmtree(self._video_dir, ignore_errors=True)
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker recorder --ros-args -p output_dir:=out`` (writes on Ctrl-C)."""
    return run_node(RecorderNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
