"""ROS 2 node ``face_tracker``: the partner's camera -> ``partner/flame_params``.

Subscribes ``partner/camera/image`` (sensor_msgs/Image rgb8 / bgr8 / mono8) and
``partner/camera/image/compressed`` (sensor_msgs/CompressedImage jpeg / png), best effort,
plus ``partner/camera/camera_info`` (CameraInfo; optional: without it a ``hfov_deg`` field of
view is assumed). Publishes ``partner/flame_params`` (rsatalker/FlameParams, reliable) at up
to 25 fps (one frame per 40-ms slot of the capture clock), stamped with the capture time
(``source_stamp`` too, so publish time minus ``source_stamp`` is the tracking latency);
``eye_pose`` carries the gaze, ``relationship`` is empty.

While no face is seen it publishes NOTHING (the motion node's neutral fallback takes over)
and logs each change between "face" and "no face". All tracking is
:class:`rsatalker_core.tracking.tracker.FaceTracker`; message conversions are
:mod:`rsatalker_ros.conversions`; topic names come from
:mod:`rsatalker_core.io.session_topics`. Parameters: ``device`` and ``flame.*`` of the
config (the head model whose parameters are fitted) and those in :data:`EXTRA_PARAMS`.

Diagnostics on ``/diagnostics`` once a second: output rate, latency after the capture stamp,
rejected camera frames, face state, device (docs/ros.md "Diagnostics"). Lifecycle (a managed
node, :class:`~rsatalker_ros.nodes.common.ManagedNode`; docs/ros.md "Lifecycle"): the head
model and MediaPipe load in ``on_configure``; the publisher and subscriptions exist only
while active. With ``autostart`` (default true) the node configures and activates itself.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional

from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from rsatalker.msg import FlameParams
from rsatalker_core.io import session_topics as st
from rsatalker_ros import topics
from rsatalker_ros.conversions import (
    ConversionError, array_to_flame_params, camera_image_to_array, camera_info_to_k, time_to_ns,
)
from rsatalker_ros.nodes.common import LIFECYCLE_PARAMS, DiagnosticsPublisher, Health, ManagedNode, run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

NODE_NAME = "face_tracker"
CONFIG_PREFIXES = ["device", "flame"]
EXTRA_PARAMS = {
    "selection": ("largest", ParamSpec("which face to track when several are seen: largest or centre "
                                       "(nearest the image centre)", choices=("largest", "centre"))),
    "max_faces": (2, ParamSpec("faces MediaPipe looks for per frame", int_range=(1, 8))),
    "smoothing": (True, ParamSpec("One-Euro filter on the tracked parameters")),
    "min_cutoff": (1.5, ParamSpec("One-Euro cutoff at rest, Hz (lower = smoother, more lag)",
                                  float_range=(0.01, 25.0))),
    "beta": (0.5, ParamSpec("One-Euro cutoff increase per unit of parameter speed (0 = plain low-pass)",
                            float_range=(0.0, 100.0))),
    "min_confidence": (0.2, ParamSpec("fits below this confidence (0-1) count as no face",
                                      float_range=(0.0, 1.0))),
    "hfov_deg": (60.0, ParamSpec("camera horizontal field of view assumed without CameraInfo, degrees",
                                 float_range=(1.0, 170.0))),
    "landmark_embedding": ("", ParamSpec("FLAME's mediapipe_landmark_embedding.npz (needed with an official "
                                         "FLAME model; empty = the stand-in head's packaged one)")),
    "landmark_response": ("", ParamSpec("the camera sees an rsatalker avatar on a screen, not a person: "
                                        "'avatar' (the default avatar's calibrated MediaPipe response) or a "
                                        "response npz; empty = a real person")),
    "fps": (25.0, ParamSpec("largest output rate, Hz (frames are taken one per 1/fps slot of the "
                            "capture clock)", float_range=(1.0, 100.0))),
    "frame_id": ("partner", ParamSpec("header frame_id of the published FlameParams")),
    **LIFECYCLE_PARAMS,
}


class FaceTrackerNode(ManagedNode):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Attributes:
        frames_in, frames_tracked, frames_published: counters.
        has_face: the current state.

    Raises:
        ConfigError: a bad parameter value.
        RsatalkerError: with autostart (``autostart`` argument, else parameter, default true):
            MediaPipe missing, an unusable FLAME model or embedding file (without autostart a
            failed configure is logged and kept in ``lifecycle_error``).
    """

    def __init__(self, node_name: str = NODE_NAME, autostart: Optional[bool] = None, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.tracker = None
        self.last_latency_ns: Optional[int] = None
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        self.params.declare()
        self.start(autostart)

    def _configure(self) -> None:
        """``on_configure``: load the head model and the tracker (MediaPipe)."""
        cfg = self._cfg = self.params.config()
        from rsatalker_core.head.flame import FlameModel  # heavy imports after the parameters
        from rsatalker_core.tracking.tracker import FaceTracker

        v = self.params.value
        flame = FlameModel(cfg.flame)
        self._device = str(flame.v_template.device)
        self.tracker = FaceTracker(
            flame, v("landmark_embedding") or None, v("landmark_response") or None, selection=v("selection"),
            max_faces=int(v("max_faces")), smoothing=bool(v("smoothing")), min_cutoff=float(v("min_cutoff")),
            beta=float(v("beta")), min_confidence=float(v("min_confidence")), hfov_deg=float(v("hfov_deg")),
        )

    def _cleanup(self) -> None:
        """``on_cleanup``: close and release the tracker."""
        if self.tracker is not None:
            self.tracker.close()
        self.tracker = None

    def _activate(self) -> None:
        """``on_activate``: counters, the publisher, the subscriptions and diagnostics (gone
        again on deactivation)."""
        cfg, v = self._cfg, self.params.value
        self._fps = float(v("fps"))
        self._frame_id = v("frame_id")
        self._K = None
        self._first_slot: Optional[int] = None
        self._last_slot: Optional[int] = None
        self.has_face = False
        self.frames_in = self.frames_tracked = self.frames_published = self.frames_rejected = 0
        self._pub = self.create_publisher(FlameParams, topics.PARTNER_FLAME, topics.FLAME_QOS)
        image_topic, compressed_topic = st.PARTNER_CAMERA.name, st.PARTNER_CAMERA_COMPRESSED.name
        info_topic = st.PARTNER_CAMERA_INFO.name
        self.create_subscription(Image, image_topic, self._on_image, topics.IMAGE_QOS)
        self.create_subscription(CompressedImage, compressed_topic, self._on_image, topics.IMAGE_QOS)
        self.create_subscription(CameraInfo, info_topic, self._on_info, topics.IMAGE_QOS)
        self.get_logger().info(
            f"tracking the partner's face from {image_topic} / {compressed_topic} into {topics.PARTNER_FLAME} "
            f"(head model {'stand-in' if self.tracker.fitter.embedding.source == 'standin' else cfg.flame.model_path})"
        )
        self.diagnostics = DiagnosticsPublisher(self, "face tracking", self.health)

    def health(self) -> Health:
        """Counters for ``/diagnostics``: FLAME frames published, camera frames rejected
        (undecodable), latency of the last output after its capture stamp (ms), device."""
        return Health(
            published=self.frames_published,
            dropped={"frames_rejected": self.frames_rejected},
            latency_ms=None if self.last_latency_ns is None else self.last_latency_ns / 1e6,
            device=getattr(self, "_device", ""),
            extra={"face": str(self.has_face).lower(), "frames_in": self.frames_in,
                   "frames_tracked": self.frames_tracked},
        )

    def _on_info(self, msg: CameraInfo) -> None:
        self._K = camera_info_to_k(msg)

    def _on_image(self, msg) -> None:
        self.frames_in += 1
        stamp_ns = time_to_ns(msg.header.stamp)
        slot = math.floor(stamp_ns * 1e-9 * self._fps + 1e-6)
        if self._last_slot is not None and slot <= self._last_slot:
            return  # one frame per 1/fps slot of the capture clock
        try:
            rgb = camera_image_to_array(msg)
        except ConversionError as exc:
            self.get_logger().warning(f"dropped camera frame: {exc}", throttle_duration_sec=2.0)
            self.frames_rejected += 1
            return
        self._last_slot = slot
        res = self.tracker.track(rgb, stamp_ns * 1e-9, self._K)
        self.frames_tracked += 1
        if res.has_face != self.has_face:
            self.has_face = res.has_face
            if res.has_face:
                self.get_logger().info(f"face found (confidence {res.confidence:.2f}): publishing partner motion")
            else:
                self.get_logger().info("face lost: publishing nothing until a face is seen")
        if not res.has_face:
            return
        if self._first_slot is None:
            self._first_slot = slot
        msg_out = array_to_flame_params(
            res.motion, stamp_ns=stamp_ns, frame_id=self._frame_id, frame_index=max(slot - self._first_slot, 0),
            source_stamp_ns=stamp_ns, eye_pose=res.eye_pose,
        )
        self._pub.publish(msg_out)
        self.frames_published += 1
        self.last_latency_ns = self.get_clock().now().nanoseconds - stamp_ns


def main(args: Optional[List[str]] = None) -> int:
    return run_node(FaceTrackerNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
