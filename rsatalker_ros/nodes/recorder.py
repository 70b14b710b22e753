"""Recorder node: collects the avatar's FLAME parameters and images, writes npz + mp4.

Subscribes ``avatar/flame_params`` and ``avatar/image``. On :meth:`RecorderNode.save`
(called by the bringup, and by ``destroy_node`` when ``output_dir`` is set) it writes:

* ``motion.npz`` — DualTalk layout (``exp (T, 50)``, ``pose (T, 6)``) via
  :func:`rsatalker_core.motion_io.save_motion_npz`, frames ordered by ``frame_index``
  (a frame that never arrived holds the previous one);
* ``avatar.mp4`` — one video frame per motion frame at 25 fps via
  :func:`rsatalker_core.video.write_video`. Images are matched to frames by their stamp
  (the render node carries the FLAME stamp through); frames the renderer skipped hold the
  last rendered image, so the video keeps real time and stays in sync with the audio;
* ``summary.json`` — counts, the received FLAME rate (fps) and latency statistics
  (receive time minus ``source_stamp`` / ``header.stamp``, milliseconds).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from rsatalker.msg import FlameParams
from rsatalker_core.config import FPS
from rsatalker_ros import topics
from rsatalker_ros.conversions import ConversionError, flame_params_to_array, image_to_array, time_to_ns
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParamSpec, ParameterSet

NODE_NAME = "recorder"
CONFIG_PREFIXES: List[str] = []
EXTRA_PARAMS = {
    "output_dir": ("", ParamSpec("directory for motion.npz, avatar.mp4, summary.json; empty = keep in memory")),
}


class RecorderNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        self.params.declare()
        self.output_dir = self.params.value("output_dir")
        self._lock = threading.Lock()
        self.motion: Dict[int, np.ndarray] = {}  # frame_index -> [56]
        self.index_by_stamp: Dict[int, int] = {}  # header stamp ns -> frame_index
        self.images: Dict[int, np.ndarray] = {}  # header stamp ns -> [H, W, 3]
        self.relationships: Dict[int, str] = {}
        self.flame_receipt_s: List[float] = []  # monotonic receive times
        self.latency_source_ms: List[float] = []
        self.latency_media_ms: List[float] = []
        self.saved = False
        self.create_subscription(FlameParams, topics.AVATAR_FLAME, self._on_flame, topics.FLAME_QOS)
        self.create_subscription(Image, topics.AVATAR_IMAGE, self._on_image, topics.IMAGE_QOS)

    def _on_flame(self, msg: FlameParams) -> None:
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
            self.relationships[int(msg.frame_index)] = msg.relationship
            self.flame_receipt_s.append(time.monotonic())
            src = time_to_ns(msg.source_stamp)
            if src > 0:
                self.latency_source_ms.append((now_ns - src) * 1e-6)
            if stamp > 0:
                self.latency_media_ms.append((now_ns - stamp) * 1e-6)

    def _on_image(self, msg: Image) -> None:
        try:
            img = image_to_array(msg)
        except ConversionError as exc:
            self.get_logger().warning(f"dropped image: {exc}", throttle_duration_sec=2.0)
            return
        with self._lock:
            self.images[time_to_ns(msg.header.stamp)] = img

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

    def video_frames(self) -> List[np.ndarray]:
        """One image per motion frame ``first..last``: the frame's render, else the last one."""
        with self._lock:
            if not self.motion or not self.images:
                return []
            by_index = {self.index_by_stamp[s]: img for s, img in self.images.items() if s in self.index_by_stamp}
            if not by_index:
                return []
            idx = sorted(self.motion)
            last = by_index[min(by_index)]
            frames = []
            for k in range(idx[0], idx[-1] + 1):
                last = by_index.get(k, last)
                frames.append(last)
        return frames

    def summary(self) -> Dict[str, Any]:
        """Counts, received FLAME rate (fps) and latency percentiles (ms)."""
        with self._lock:
            t = self.flame_receipt_s
            fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
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
                "images": len(self.images),
                "flame_fps": fps,
                "relationships": sorted(set(self.relationships.values())),
                "latency_after_source_stamp_ms": stats(self.latency_source_ms),
                "latency_after_media_time_ms": stats(self.latency_media_ms),
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
        from rsatalker_core.motion_io import save_motion_npz
        from rsatalker_core.video import write_video

        out_dir = output_dir or self.output_dir
        if not out_dir:
            return {}
        os.makedirs(out_dir, exist_ok=True)
        written: Dict[str, str] = {}
        motion = self.motion_array()
        if len(motion):
            written["motion"] = os.path.join(out_dir, "motion.npz")
            save_motion_npz(written["motion"], motion)
        frames = self.video_frames()
        if frames:
            seg = None
            if audio is not None and sample_rate:
                first = min(self.motion)
                spf = sample_rate // FPS
                seg = np.asarray(audio, dtype=np.float32)[first * spf : (first + len(frames)) * spf]
            written["video"] = os.path.join(out_dir, "avatar.mp4")
            write_video(written["video"], frames, fps=FPS, audio=seg if seg is not None and seg.size else None,
                        sample_rate=sample_rate)
        written["summary"] = os.path.join(out_dir, "summary.json")
        with open(written["summary"], "w", encoding="utf-8") as fh:
            json.dump(self.summary(), fh, indent=2)
        self.saved = True
        self.get_logger().info(f"wrote {', '.join(written.values())}")
        return written

    def destroy_node(self) -> None:
        """Write the outputs (when ``output_dir`` is set and not yet saved), then destroy."""
        if self.output_dir and not self.saved:
            try:
                self.save()
            except Exception as exc:  # never lose the shutdown over a write error
                self.get_logger().error(f"could not write recordings: {type(exc).__name__}: {exc}")
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker recorder --ros-args -p output_dir:=out`` (writes on Ctrl-C)."""
    return run_node(RecorderNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
