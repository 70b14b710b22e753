"""Render node: the avatar's FLAME parameters -> RGB images (sensor_msgs/Image, rgb8).

Subscribes ``avatar/flame_params`` (FlameParams, reliable); publishes ``avatar/image``
(rgb8), ``avatar/image/compressed`` (JPEG, ``jpeg_quality``) and ``avatar/camera_info`` (the
render intrinsics, plumb_bob without distortion), all three with the same stamp and the
camera's optical ``frame_id``, reliable with depth 2 (docs/ros.md "QoS"), and the optical
frame's static transform in ``tf_parent_frame`` on ``/tf_static`` (docs/ros.md "Frames"). Rendering (:class:`rsatalker_core.render.renderer.AvatarRenderer`: FLAME -> bound
Gaussians + the relationship's offsets -> rasterizer) runs in a worker thread. Each frame
renders with the message's own ``relationship`` and ``frame_index`` (time ``frame_index /
25`` s), exactly as ``rsatalker generate`` renders the same motion offline
(:meth:`RenderNode.render_message`); an avatar without relationship offsets ignores both.
The subscription only keeps the NEWEST message: when rendering is slower than 25 fps, frames
that arrived meanwhile are dropped (counted in ``frames_skipped``) and the most recent one
is rendered next, so the image stream lags by at most one render time. The worker also never
spends more than ``max_busy_fraction`` of the wall time rendering on a CPU (after a render
that took ``c`` s of this thread's CPU time it rests at least ``c * (1 / max_busy_fraction -
1)`` s; waits for the GIL or for a core inside a render are not counted, as they take nothing
from the other threads), so a renderer that cannot keep up degrades
to a lower image rate instead of starving the motion node of CPU and of the GIL; and it
runs ``thread_nice`` steps nicer than the rest of the process (Linux per-thread priority), so
when the CPU is short the scheduler serves inference and the executor first. The image
``header.stamp`` is the FLAME message's stamp (the frame's media time), carried through for
latency measurement and alignment.

Parameters: ``config_file``, ``device``, ``flame.*``, ``avatar.*``, ``render.*``, plus
``frame_id`` (the camera's optical frame), ``tf_parent_frame``, ``jpeg_quality``,
``publish_compressed``, ``qos_overrides.*``, ``max_fps`` (a bound on the image rate) and
``max_busy_fraction`` (a bound on the render thread's share of the wall time) and
``thread_nice`` (the render thread's priority below the process's), ``autostart``.

Diagnostics on ``/diagnostics`` once a second: image rate, latency after the FLAME stamp,
stale frames skipped, render time, device (docs/ros.md "Diagnostics"). Lifecycle (a managed
node, :class:`~rsatalker_ros.nodes.common.ManagedNode`; docs/ros.md "Lifecycle"): the FLAME
model and avatar load in ``on_configure``; the publishers, the subscription, the static TF
and the render thread exist only while active. With ``autostart`` (default true) the node
configures and activates itself at start-up.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any, List, Optional

from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from rsatalker.msg import FlameParams
from rsatalker_core.io import session_topics as st
from rsatalker_ros import topics
from rsatalker_ros.conversions import (
    ConversionError, array_to_compressed_image, array_to_image, camera_info_msg, flame_params_relationship,
    flame_params_to_array, time_to_ns, transform_stamped,
)
from rsatalker_ros.nodes.common import LIFECYCLE_PARAMS, DiagnosticsPublisher, Health, ManagedNode, run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

if TYPE_CHECKING:
    import numpy as np

NODE_NAME = "render_node"
CONFIG_PREFIXES = ["device", "flame", "avatar", "render"]
EXTRA_PARAMS = {
    "frame_id": ("avatar_camera_optical", ParamSpec(
        "the render camera's optical frame (REP 103: z forward, x right, y down): header frame_id of "
        "the images and camera info, child of tf_parent_frame on /tf_static")),
    "tf_parent_frame": ("avatar_base", ParamSpec(
        "parent frame of the camera's static transform: the avatar's head pivot in REP-103 axes "
        "(x forward, y left, z up); empty = publish no TF")),
    "jpeg_quality": (85, ParamSpec("JPEG quality of avatar/image/compressed, 1-100", int_range=(1, 100))),
    "publish_compressed": (True, ParamSpec("also publish avatar/image/compressed (JPEG)")),
    "max_fps": (0.0, ParamSpec(
        "upper bound on rendered images per second, Hz; 0 = as fast as possible. On a CPU shared "
        "with the motion node (composed bringup), a bound keeps rendering from starving inference",
        float_range=(0.0, 1000.0))),
    "max_busy_fraction": (0.8, ParamSpec(
        "largest share of the wall time the render thread spends rendering on a CPU (its CPU time), 0-1; when rendering "
        "cannot keep up, the image rate drops instead of the motion node starving (1 = no bound)",
        float_range=(0.05, 1.0))),
    "thread_nice": (5, ParamSpec(
        "niceness added to the render thread (Linux per-thread priority, 0 = none): when the CPU is short, "
        "the motion node's inference and the executor run first and the image rate drops instead",
        int_range=(0, 19))),
    **LIFECYCLE_PARAMS,
}


class RenderNode(ManagedNode):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`. ``autostart``
    (default: the ``autostart`` parameter, true) configures and activates the node in the
    constructor.

    Raises:
        ConfigError: a bad config file or parameter value.
        RsatalkerError: with autostart, the FLAME model or avatar checkpoint cannot be loaded
            (without, a failed configure is logged and kept in ``lifecycle_error``).
    """

    def __init__(self, node_name: str = NODE_NAME, autostart: Optional[bool] = None, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.last_latency_ns: Optional[int] = None
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        self.params.declare()
        self.start(autostart)

    def _configure(self) -> None:
        """``on_configure``: load the FLAME model and the avatar (the renderer)."""
        cfg = self._cfg = self.params.config()
        from rsatalker_core.render.renderer import AvatarRenderer  # heavy: FLAME + Gaussians

        self.renderer = AvatarRenderer(cfg)
        # Compile / load the rasterizer now, before frames arrive: a first frame that compiled
        # numba's kernels in the (niced) render thread took the first 20+ s of a busy demo.
        self.get_logger().info(f"renderer warmed up in {self.renderer.warmup():.1f} s")

    def _cleanup(self) -> None:
        """``on_cleanup``: release the renderer."""
        self.renderer = None

    def _activate(self) -> None:
        """``on_activate``: publishers, the static TF, the subscription, diagnostics and the
        render thread (all gone again on deactivation)."""
        cfg = self._cfg
        self._frame_id = self.params.value("frame_id")
        self._latest: Optional[FlameParams] = None
        self._cond = threading.Condition()
        self._stop = False
        self.frames_rendered = 0
        self._last_render = 0.0
        self._last_duration = 0.0  # seconds the last render took (wall)
        self._last_cpu = 0.0  # CPU seconds of the render thread in the last render
        self.frames_skipped = 0  # stale FLAME frames dropped (a newer one arrived first)
        # QoS (docs/ros.md "QoS"): reliable, depth-2 publishers (rviz, web_video_server and
        # foxglove_bridge at their reliable defaults receive them); each overridable.
        qo, image_qos = topics.overriding, (lambda: topics.publisher_qos(st.AVATAR_IMAGE))
        self._pub = self.create_publisher(Image, topics.AVATAR_IMAGE, image_qos(), qos_overriding_options=qo())
        self._pub_jpeg = (self.create_publisher(CompressedImage, topics.AVATAR_IMAGE_COMPRESSED, image_qos(),
                                                qos_overriding_options=qo())
                          if self.params.value("publish_compressed") else None)
        self._pub_info = self.create_publisher(CameraInfo, topics.AVATAR_CAMERA_INFO, image_qos(),
                                               qos_overriding_options=qo())
        self._K = self.renderer.K[0].detach().cpu().double().numpy()  # [3, 3] pixels
        self._size = (int(cfg.render.width), int(cfg.render.height))
        self._tf_static = None
        if self.params.value("tf_parent_frame"):
            from rsatalker_ros.tf import make_broadcaster

            self._tf_static = make_broadcaster(self, static=True)
            if self._tf_static is not None:
                self._tf_static.send([self.camera_transform()])
        self.create_subscription(FlameParams, topics.AVATAR_FLAME, self._on_flame,
                                 topics.subscription_qos(st.AVATAR_FLAME), qos_overriding_options=qo())
        self._worker = threading.Thread(target=self._work, name="rsatalker-render", daemon=True)
        self._worker.start()
        self.diagnostics = DiagnosticsPublisher(self, "render", self.health)
        self.get_logger().info(
            f"rendering {cfg.render.width}x{cfg.render.height} on {self.renderer.device} "
            f"(backend {cfg.render.backend}) from {topics.AVATAR_FLAME}"
        )

    def health(self) -> Health:
        """Counters for ``/diagnostics``: images published, stale FLAME frames skipped, latency
        of the last image after its FLAME stamp (ms), last render time (ms), device."""
        return Health(
            published=self.frames_rendered,
            dropped={"frames_skipped": self.frames_skipped},
            latency_ms=None if self.last_latency_ns is None else self.last_latency_ns / 1e6,
            device=str(self.renderer.device) if self.renderer is not None else "",
            extra={"render_ms": f"{self._last_duration * 1e3:.1f}", "render_cpu_ms": f"{self._last_cpu * 1e3:.1f}"},
        )

    def head_pivot(self) -> "np.ndarray":
        """The FLAME root joint of the neutral head, ``[3]`` metres in FLAME axes: the point
        the head pose rotates about, which ``tf_parent_frame`` is centred on."""
        flame = self.renderer.flame
        return (flame.J_regressor[0] @ flame.v_template).detach().cpu().double().numpy()

    def camera_transform(self):
        """``geometry_msgs/TransformStamped`` of the camera's optical frame (``frame_id``) in
        ``tf_parent_frame`` (REP 103; :func:`rsatalker_core.head.frames.camera_optical_transform_rep103`)."""
        from rsatalker_core.head.frames import camera_optical_transform_rep103, flame_vector_to_rep103

        t, q = camera_optical_transform_rep103(self.renderer.viewmat[0].detach().cpu().double().numpy())
        t = t - flame_vector_to_rep103(self.head_pivot())
        return transform_stamped(self.params.value("tf_parent_frame"), self._frame_id, t, q,
                                 self.get_clock().now().nanoseconds)

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

    def _lower_priority(self) -> None:
        """Give the calling (render) thread ``thread_nice`` more niceness than the process
        (``setpriority`` on its thread id, Linux); elsewhere, or when refused, a debug log."""
        nice = int(self.params.value("thread_nice"))
        if nice <= 0:
            return
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except (AttributeError, OSError) as exc:
            self.get_logger().debug(f"render thread priority unchanged: {exc}")

    def _work(self) -> None:
        self._lower_priority()
        while True:
            # Rest first (so the newest frame is the one rendered): the max_fps slot, and at
            # least enough to keep the busy share at max_busy_fraction.
            max_fps = float(self.params.value("max_fps"))
            gap = 1.0 / max_fps if max_fps > 0 else 0.0
            # The busy share counts this thread's CPU time, not its wall time: a render that
            # waited for the GIL or a core meanwhile did not take them from anyone, and resting
            # in proportion to such waits only lowered the image rate on an idle CPU.
            gap = max(gap, self._last_duration + self._last_cpu * (1.0 / float(self.params.value("max_busy_fraction")) - 1.0))
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
            cpu0 = time.thread_time()
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
                self._last_cpu = time.thread_time() - cpu0
            stamp_ns = time_to_ns(msg.header.stamp)  # one stamp for the image, JPEG and camera info
            self._pub.publish(array_to_image(rgb, stamp_ns, self._frame_id))
            if self._pub_jpeg is not None:
                self._pub_jpeg.publish(array_to_compressed_image(rgb, stamp_ns, self._frame_id,
                                                                 int(self.params.value("jpeg_quality"))))
            self._pub_info.publish(camera_info_msg(self._K, *self._size, stamp_ns, self._frame_id))
            self.frames_rendered += 1
            self.last_latency_ns = self.get_clock().now().nanoseconds - stamp_ns

    def _deactivate(self) -> None:
        """``on_deactivate`` (and ``destroy_node``): stop the render thread."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if getattr(self, "_worker", None) is not None:
            self._worker.join(timeout=10.0)


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker render_node --ros-args -p render.width:=128``."""
    return run_node(RenderNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
