"""Render node: the avatar's FLAME parameters -> RGB images (sensor_msgs/Image, rgb8).

Subscribes ``avatar/flame_params`` (FlameParams, reliable), publishes ``avatar/image`` (best
effort). Rendering (:class:`rsatalker_core.render.renderer.AvatarRenderer`: FLAME -> bound
Gaussians + the relationship's offsets -> rasterizer) runs in a worker thread. Each frame
renders with the message's own ``relationship`` and ``frame_index`` (time ``frame_index /
25`` s), exactly as ``rsatalker generate`` renders the same motion offline
(:meth:`RenderNode.render_message`); an avatar without relationship offsets ignores both.
The subscription only keeps the NEWEST message: when rendering is slower than 25 fps, frames
that arrived meanwhile are dropped (counted in ``frames_skipped``) and the most recent one
is rendered next, so the image stream lags by at most one render time. The worker also never
renders more than ``max_busy_fraction`` of the wall time (after a render of ``d`` s it rests
at least ``d * (1 / max_busy_fraction - 1)`` s), so a renderer that cannot keep up degrades
to a lower image rate instead of starving the motion node of CPU and of the GIL. The image
``header.stamp`` is the FLAME message's stamp (the frame's media time), carried through for
latency measurement and alignment.

Parameters: ``config_file``, ``device``, ``flame.*``, ``avatar.*``, ``render.*``, plus
``frame_id`` (the camera frame of the images), ``max_fps`` (a bound on the image rate) and
``max_busy_fraction`` (a bound on the render thread's share of the wall time).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, List, Optional

from rclpy.node import Node
from sensor_msgs.msg import Image

from rsatalker.msg import FlameParams
from rsatalker_ros import topics
from rsatalker_ros.conversions import (
    ConversionError, array_to_image, flame_params_relationship, flame_params_to_array, time_to_ns,
)
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

if TYPE_CHECKING:
    import numpy as np

NODE_NAME = "render_node"
CONFIG_PREFIXES = ["device", "flame", "avatar", "render"]
EXTRA_PARAMS = {
    "frame_id": ("avatar_camera", ParamSpec("header frame_id of the published images")),
    "max_fps": (0.0, ParamSpec(
        "upper bound on rendered images per second, Hz; 0 = as fast as possible. On a CPU shared "
        "with the motion node (composed bringup), a bound keeps rendering from starving inference",
        float_range=(0.0, 1000.0))),
    "max_busy_fraction": (0.8, ParamSpec(
        "largest share of the wall time the render thread spends rendering, 0-1; when rendering "
        "cannot keep up, the image rate drops instead of the motion node starving (1 = no bound)",
        float_range=(0.05, 1.0))),
}


class RenderNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Raises:
        ConfigError: a bad config file or parameter value.
        RsatalkerError: the FLAME model or avatar checkpoint cannot be loaded.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        cfg = self.params.declare()
        from rsatalker_core.render.renderer import AvatarRenderer  # heavy: FLAME + Gaussians

        self.renderer = AvatarRenderer(cfg)
        self._frame_id = self.params.value("frame_id")
        self._latest: Optional[FlameParams] = None
        self._cond = threading.Condition()
        self._stop = False
        self.frames_rendered = 0
        self._last_render = 0.0
        self._last_duration = 0.0  # seconds the last render took
        self.frames_skipped = 0  # stale FLAME frames dropped (a newer one arrived first)
        self._pub = self.create_publisher(Image, topics.AVATAR_IMAGE, topics.IMAGE_QOS)
        self.create_subscription(FlameParams, topics.AVATAR_FLAME, self._on_flame, topics.FLAME_QOS)
        self._worker = threading.Thread(target=self._work, name="rsatalker-render", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"rendering {cfg.render.width}x{cfg.render.height} on {self.renderer.device} "
            f"(backend {cfg.render.backend}) from {topics.AVATAR_FLAME}"
        )

    def _on_flame(self, msg: FlameParams) -> None:
        with self._cond:
            if self._latest is not None:
                self.frames_skipped += 1
            self._latest = msg
            self._cond.notify()

    def render_message(self, msg: FlameParams) -> "np.ndarray":
        """RGB ``[H, W, 3]`` uint8 of one FlameParams message: its motion, its
        ``relationship`` (empty = unknown: no offsets) at its ``frame_index``.

        Raises:
            ConversionError: a malformed message or an unknown relationship.
        """
        motion = flame_params_to_array(msg)
        rel = flame_params_relationship(msg)
        return self.renderer.render(motion, rel, frame_index=int(msg.frame_index))

    def _work(self) -> None:
        while True:
            # Rest first (so the newest frame is the one rendered): the max_fps slot, and at
            # least enough to keep the busy share at max_busy_fraction.
            max_fps = float(self.params.value("max_fps"))
            gap = 1.0 / max_fps if max_fps > 0 else 0.0
            gap = max(gap, self._last_duration / float(self.params.value("max_busy_fraction")))
            wait = self._last_render + gap - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self._cond:
                while self._latest is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                msg, self._latest = self._latest, None
            self._last_render = time.monotonic()
            try:
                rgb = self.render_message(msg)
            except ConversionError as exc:
                self.get_logger().warning(f"dropped FLAME parameters: {exc}", throttle_duration_sec=2.0)
                continue
            except Exception as exc:  # keep running; the next frame may render
                self.get_logger().error(f"render failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
                continue
            finally:
                self._last_duration = time.monotonic() - self._last_render
            self._pub.publish(array_to_image(rgb, time_to_ns(msg.header.stamp), self._frame_id))
            self.frames_rendered += 1

    def destroy_node(self) -> None:
        """Stop the render thread, then destroy the node."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if getattr(self, "_worker", None) is not None:
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker render_node --ros-args -p render.width:=128``."""
    return run_node(RenderNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
