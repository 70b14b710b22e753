"""Motion node: both speakers' audio (+ the partner's FLAME motion) -> the avatar's FLAME
parameters at 25 fps, conditioned on a live-changeable social relationship.

Subscribes (see :mod:`rsatalker_ros.topics`):
    ``audio/self``, ``audio/partner`` (AudioChunk, best effort), ``partner/flame_params``
    (FlameParams, best effort, optional), ``relationship`` (Relationship, latched: one sent
    while the model loads still arrives).
Publishes:
    ``avatar/flame_params`` (FlameParams, reliable) at 25 fps, and with each frame the head
    frame ``head_frame`` in ``tf_parent_frame`` on ``/tf`` (REP-103 axes, docs/ros.md "Frames").
QoS per topic can be overridden with ``qos_overrides.*`` parameters (docs/ros.md "QoS").
Diagnostics on ``/diagnostics`` once a second: FLAME rate, latency after the source stamp,
drops, device (docs/ros.md "Diagnostics").

Lifecycle (a managed node, :class:`~rsatalker_ros.nodes.common.ManagedNode`; docs/ros.md
"Lifecycle"): the motion generator loads in ``on_configure``; the publishers,
subscriptions, pacing timer and inference thread exist only while active. With
``autostart`` (default true) the node configures and activates itself at start-up.

Threads and pacing. Subscription callbacks only convert and validate messages and append
them, in arrival order, to an inbox. One worker thread takes them one at a time, feeds
:class:`~rsatalker_core.streaming.StreamingMotionGenerator` and calls ``step()`` after each
self-audio chunk, so while inference keeps up the generator's windows depend only on the
sequence of chunks, not on thread timing; inference never blocks the executor. When more
than ``catch_up_frames`` self-audio chunks are waiting (inference slower than real time for
a moment), it pushes everything waiting and generates once, in larger windows, so no
backlog builds up (at hop 1 a step costs about as much as a step of several frames).

Each frame is published ``d`` after its media time, where ``d`` is the smallest delay of
the first frame of a step over the last ``PACING_WINDOW_S`` seconds: at hop 1 a frame goes
out as soon as it is generated (from the inference thread, with no timer wait); frames
generated together (``streaming.hop_frames`` > 1) are spread out at their media cadence (a
50 Hz timer publishes them when due); a frame later than ``d`` (a stall) goes out at once,
so latency never stays above what inference currently needs. If more than
``max_queue_frames`` frames wait, the oldest are dropped so latency stays bounded.

Stamps. ``header.stamp`` = the frame's media time (capture time of the self audio at the
frame's first sample); ``source_stamp`` = stamp of the self-audio chunk whose arrival
completed the frame. Bad messages (NaN/Inf, bad sample rate, wrong lengths) are logged
(throttled) and dropped; the node keeps running.

Parameters: ``config_file`` and the config fields ``device``, ``seed``, ``relationship``
(live), ``speech.*``, ``social.*``, ``motion.*``, ``streaming.window_frames``,
``streaming.lookahead_frames``, ``streaming.hop_frames``; plus ``max_queue_frames``, ``catch_up_frames``,
``frame_id``, ``tf_parent_frame``, ``head_frame`` and ``qos_overrides.*``.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
import time
from typing import Any, Deque, List, Optional, Tuple

import numpy as np

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.parameter import Parameter

from rsatalker.msg import AudioChunk, FlameParams
from rsatalker.msg import Relationship as RelationshipMsg
from rsatalker_core.config import FPS
from rsatalker_core.errors import AudioError, ConfigError, RsatalkerError
from rsatalker_core.io import session_topics as st
from rsatalker_core.relationship import Relationship
from rsatalker_core.model.streaming import MotionFrame, StreamingMotionGenerator
from rsatalker_ros import topics
from rsatalker_ros.conversions import (
    MAX_CHUNK_SECONDS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    ConversionError,
    array_to_flame_params,
    audio_chunk_to_array,
    flame_params_to_array,
    relationship_msg_to_relationship,
    time_to_ns,
    transform_stamped,
)
from rsatalker_ros.nodes.common import LIFECYCLE_PARAMS, DiagnosticsPublisher, Health, ManagedNode, run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

NODE_NAME = "motion_node"
CONFIG_PREFIXES = [
    "device",
    "seed",
    "relationship",
    "speech",
    "social",
    "motion",
    "streaming.window_frames",
    "streaming.lookahead_frames",
    "streaming.hop_frames",
]
EXTRA_PARAMS = {
    "max_queue_frames": (
        25,
        ParamSpec("most frames waiting for their 25 fps slot; older ones are dropped", int_range=(1, 10000)),
    ),
    "catch_up_frames": (
        3,
        ParamSpec("most self-audio chunks (frames) waiting for inference before the node pushes all waiting "
                  "input and generates once, in larger windows, instead of one step per chunk", int_range=(1, 10000)),
    ),
    "frame_id": ("avatar", ParamSpec("header frame_id of the published FLAME parameters")),
    "tf_parent_frame": ("avatar_base", ParamSpec(
        "parent of the head frame on /tf: the head's pivot (FLAME root joint) in REP-103 axes (x forward, "
        "y left, z up); empty = publish no TF")),
    "head_frame": ("avatar_head", ParamSpec("the avatar's head frame on /tf (REP-103 axes), one transform per "
                                            "published FLAME frame, stamped like it")),
    **LIFECYCLE_PARAMS,
}
_STOP = object()
#: Most input messages waiting for inference (about 6 s of audio and partner motion); when
#: inference stalls, the oldest are dropped (counted in ``MotionNode.inputs_dropped``, logged)
#: so the node recovers within a second of the stall ending instead of working off a backlog.
MAX_INBOX_MESSAGES = 500
#: Seconds of recent steps whose smallest delay (publish time minus media time of the
#: step's first frame) sets the publication delay of every frame (see the module docstring).
PACING_WINDOW_S = 2.0
#: Dropped-message warnings are logged at most once per kind of input in this period, s.
REJECT_LOG_PERIOD_S = 2.0


def _silence_for(msg: AudioChunk) -> Optional[Tuple[np.ndarray, int]]:
    """Silence as long as a rejected chunk, ``(zeros [S], sample_rate)``, when its rate and
    length are usable; else ``None``."""
    try:
        sr, n = int(msg.sample_rate), len(msg.samples)
    except (TypeError, ValueError):
        return None
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE or not 0 < n <= MAX_CHUNK_SECONDS * sr:
        return None
    return np.zeros(n, np.float32), sr


class MotionNode(ManagedNode):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`
    (e.g. ``parameter_overrides``). ``autostart`` (default: the ``autostart`` parameter, true)
    configures and activates the node in the constructor.

    Raises:
        ConfigError: a bad config file or parameter value.
        RsatalkerError: with autostart, the model cannot be built (checkpoint, speech
            encoder, device); without, a failed configure is logged and kept in
            ``lifecycle_error``.
    """

    def __init__(self, node_name: str = NODE_NAME, autostart: Optional[bool] = None, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._gen: Optional[StreamingMotionGenerator] = None
        self.last_latency_ns: Optional[int] = None
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS, on_change=self._on_param)
        self.params.declare()
        self.start(autostart)

    def _configure(self) -> None:
        """``on_configure``: build the streaming motion generator (model load)."""
        cfg, node_name = self.params.config(), self.get_name()
        try:
            self._gen = StreamingMotionGenerator(cfg)
        except ValueError as exc:  # inconsistent streaming settings
            if isinstance(exc, RsatalkerError):
                raise
            raise ConfigError(f"{node_name}: {exc}") from exc
        # Which head model's expression basis the published `expression` coefficients are in
        # (read-only; docs/motion.md): e.g. "rsatalker-standin" for the shipped default model.
        if not self.has_parameter("expression_space"):  # (a second configure keeps it)
            self.declare_parameter(
                "expression_space", self._gen.model.expression_space,
                ParameterDescriptor(description="expression space of the published FlameParams.expression "
                                                "(the motion checkpoint's training data; docs/motion.md)",
                                    read_only=True),
            )
        self._frame_id = self.params.value("frame_id")
        self._max_queue = int(self.params.value("max_queue_frames"))
        self.get_logger().info(
            f"motion generator ready: speech encoder {cfg.speech.encoder}, device {self._gen.model.device}, "
            f"relationship {self._gen.relationship.name}, lookahead {cfg.streaming.lookahead_frames} frames"
        )

    def _cleanup(self) -> None:
        """``on_cleanup``: release the motion generator."""
        self._gen = None

    def _activate(self) -> None:
        """``on_activate``: fresh queues and counters, topics, TF, diagnostics, the inference
        thread and the pacing timer (all gone again on deactivation)."""
        self._inbox: "queue.Queue[Any]" = queue.Queue(maxsize=MAX_INBOX_MESSAGES)
        self._inbox_lock = threading.Lock()
        self.inputs_dropped = 0
        self._busy = False
        self._out: Deque[Tuple[MotionFrame, int]] = collections.deque()
        self._out_lock = threading.Lock()
        self._pub_lock = threading.Lock()  # publication in frame order from two threads
        self._delays: Deque[Tuple[float, int]] = collections.deque()  # (monotonic s, delay ns) per step
        self._catch_up = int(self.params.value("catch_up_frames"))
        self._last_self_stamp_ns = 0
        self.frames_published = 0
        self.frames_dropped = 0
        self.messages_rejected = 0

        # QoS (docs/ros.md "QoS"): reliable FLAME out; best-effort (sensor-data) audio and
        # partner FLAME in, which match any publisher; latched relationship; each overridable
        # through qos_overrides.* parameters.
        self._pub = self.create_publisher(FlameParams, topics.AVATAR_FLAME,
                                          topics.publisher_qos(st.AVATAR_FLAME),
                                          qos_overriding_options=topics.overriding())
        self.create_subscription(
            AudioChunk, topics.AUDIO_SELF, lambda m: self._on_audio(m, "self"),
            topics.subscription_qos(st.AUDIO_SELF),
            qos_overriding_options=topics.overriding(),
        )
        self.create_subscription(
            AudioChunk, topics.AUDIO_PARTNER, lambda m: self._on_audio(m, "partner"),
            topics.subscription_qos(st.AUDIO_PARTNER),
            qos_overriding_options=topics.overriding(),
        )
        self.create_subscription(FlameParams, topics.PARTNER_FLAME, self._on_partner_flame,
                                 topics.subscription_qos(st.PARTNER_FLAME), qos_overriding_options=topics.overriding())
        self.create_subscription(
            RelationshipMsg, topics.RELATIONSHIP, self._on_relationship, topics.subscription_qos(st.RELATIONSHIP),
            qos_overriding_options=topics.overriding(),
        )
        self._tf = None
        if self.params.value("tf_parent_frame"):
            from rsatalker_ros.tf import make_broadcaster

            self._tf = make_broadcaster(self)
        self._worker = threading.Thread(target=self._work, name="rsatalker-motion", daemon=True)
        self._worker.start()
        self._timer = self.create_timer(1.0 / (2 * FPS), self._tick)
        self.diagnostics = DiagnosticsPublisher(self, "motion", self.health)

    def health(self) -> Health:
        """Counters for ``/diagnostics``: FLAME frames published, frames and inputs dropped,
        messages rejected, latency of the last frame after its source stamp (ms), device."""
        return Health(
            published=self.frames_published,
            dropped={"frames_dropped": self.frames_dropped, "inputs_dropped": self.inputs_dropped,
                     "messages_rejected": self.messages_rejected},
            latency_ms=None if self.last_latency_ns is None else self.last_latency_ns / 1e6,
            device=str(self._gen.model.device) if self._gen is not None else "",
            extra={"relationship": self._gen.relationship.name if self._gen is not None else "",
                   "input_queue": self._inbox.qsize()},
        )

    # ------------------------------------------------------------------ inputs

    def _reject(self, what: str, exc: Exception) -> None:
        """Count and log a dropped message, throttled per kind of input (at most one line per
        ``what`` every 2 s), so that one kind of bad input never hides another."""
        self.messages_rejected += 1
        logged = self.__dict__.setdefault("_reject_logged", {})
        now = time.monotonic()
        if now - logged.get(what, -math.inf) >= REJECT_LOG_PERIOD_S:
            logged[what] = now
            self.get_logger().warning(f"dropped {what}: {exc}")

    def _on_audio(self, msg: AudioChunk, role: str) -> None:
        try:
            samples, sr = audio_chunk_to_array(msg)
        except ConversionError as exc:
            self._reject(f"{role} audio chunk", exc)
            silence = _silence_for(msg) if role == "self" else None
            if silence is not None:  # keep the frame clock: the chunk's span becomes silence
                self._enqueue(("audio", role, silence[0], silence[1], time_to_ns(msg.header.stamp)))
            return
        self._enqueue(("audio", role, samples, sr, time_to_ns(msg.header.stamp)))

    def _on_partner_flame(self, msg: FlameParams) -> None:
        try:
            motion = flame_params_to_array(msg)
        except ConversionError as exc:
            self._reject("partner FLAME parameters", exc)
            return
        self._enqueue(("motion", motion, time_to_ns(msg.header.stamp)))

    def _enqueue(self, item: Any) -> None:
        """Append to the bounded inbox; when full, drop the oldest message (counted, logged)."""
        with self._inbox_lock:
            while True:
                try:
                    self._inbox.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._inbox.get_nowait()
                    except queue.Empty:
                        continue
                    self.inputs_dropped += 1
                    self.get_logger().warning(
                        f"input queue over {MAX_INBOX_MESSAGES} messages (inference stalled): dropping the "
                        f"oldest ({self.inputs_dropped} dropped so far)", throttle_duration_sec=2.0)

    def _on_relationship(self, msg: RelationshipMsg) -> None:
        try:
            rel = relationship_msg_to_relationship(msg)
        except ConversionError as exc:
            self._reject("relationship message", exc)
            return
        result = self.set_parameters([Parameter("relationship", value=rel.name)])[0]
        if not result.successful:
            self.get_logger().warning(f"relationship '{rel.name}' refused: {result.reason}")

    def _on_param(self, name: str, value: Any) -> None:
        if name == "relationship" and self._gen is not None:
            self._gen.set_relationship(value)
            self.get_logger().info(f"relationship -> {Relationship.parse(value).name}")

    # ------------------------------------------------------------------ inference

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            self._busy = True
            backlog = self._inbox.qsize()
            with self._inbox.mutex:  # self-audio chunks waiting = frames behind
                behind = sum(1 for it in self._inbox.queue if it is not _STOP and it[0] == "audio" and it[1] == "self")
            catch_up = behind > self._catch_up
            if catch_up:
                self.get_logger().warning(
                    f"inference is behind real time: {behind} frames of audio waiting; catching up in "
                    "larger windows (try a faster device, speech.encoder logmel or a larger "
                    "streaming.hop_frames)",
                    throttle_duration_sec=5.0,
                )
            self._feed(item, step=not catch_up)
            if catch_up:  # push everything waiting, then generate once
                for _ in range(backlog):
                    nxt = self._inbox.get()
                    if nxt is _STOP:
                        return
                    self._feed(nxt, step=False)
                self._step()
            self._busy = False

    def _feed(self, item: Any, step: bool) -> None:
        """Push one inbox item into the generator; step after a self-audio chunk if ``step``."""
        try:
            if item[0] == "audio":
                _, role, samples, sr, stamp_ns = item
                try:
                    self._gen.push_audio(role, samples, sr, stamp_ns)
                except AudioError:
                    if role == "self":  # keep the frame clock: the chunk's span becomes silence
                        self._gen.push_audio(role, np.zeros(len(samples), np.float32), sr, stamp_ns)
                    raise
                if role == "self":
                    self._last_self_stamp_ns = stamp_ns
                    if step:
                        self._step()
            else:
                _, motion, stamp_ns = item
                self._gen.push_partner_motion(motion, stamp_ns)
        except (AudioError, ValueError) as exc:
            self._reject("input", exc)

    def _step(self) -> None:
        """Generate every ready frame and queue it for paced publication."""
        try:
            frames = self._gen.step()
        except Exception as exc:  # keep the node alive; a model failure is logged
            self.get_logger().error(f"motion generation failed: {type(exc).__name__}: {exc}")
            return
        if frames:
            if frames[0].source_stamp_ns > 0:
                delay = self.get_clock().now().nanoseconds - frames[0].source_stamp_ns
                self._delays.append((time.monotonic(), delay))
            with self._out_lock:
                self._out.extend((f, self._last_self_stamp_ns) for f in frames)
            self._tick()  # publish what is due now, without waiting for the timer

    # ------------------------------------------------------------------ paced output

    def publish_delay_ns(self) -> int:
        """Delay of publication after a frame's media time, ns: the smallest delay of a step's
        first frame over the last ``PACING_WINDOW_S`` seconds (0 before the first step)."""
        horizon = time.monotonic() - PACING_WINDOW_S
        with self._out_lock:
            while len(self._delays) > 1 and self._delays[0][0] < horizon:
                self._delays.popleft()
            return min((d for _, d in self._delays), default=0)

    def _tick(self) -> None:
        with self._pub_lock:
            self._send_due()

    def _send_due(self) -> None:
        delay = self.publish_delay_ns()
        # due before the next timer tick (half its period early at most)
        now_ns = self.get_clock().now().nanoseconds + int(0.5e9 / (2 * FPS))
        to_send: List[Tuple[MotionFrame, int]] = []
        with self._out_lock:
            if not self._out:
                return
            overflow = len(self._out) - self._max_queue
            if overflow > 0:
                for _ in range(overflow):
                    self._out.popleft()
                self.frames_dropped += overflow
                self.get_logger().warning(
                    f"output queue over {self._max_queue} frames: dropped {overflow} old frame(s) "
                    "(inference or input running faster than real time)",
                    throttle_duration_sec=5.0,
                )
            while self._out and (self._out[0][0].source_stamp_ns <= 0
                                 or self._out[0][0].source_stamp_ns + delay <= now_ns):
                to_send.append(self._out.popleft())
        for frame, source_ns in to_send:
            self._publish(frame, source_ns)

    def _publish(self, frame: MotionFrame, source_ns: int) -> None:
        try:
            msg = array_to_flame_params(
                frame.motion,
                stamp_ns=frame.source_stamp_ns,
                frame_id=self._frame_id,
                frame_index=frame.index,
                relationship=frame.relationship,
                source_stamp_ns=source_ns,
            )
        except ConversionError as exc:  # NaN from the model: never publish it
            self._reject(f"generated frame {frame.index}", exc)
            return
        self._pub.publish(msg)
        self.frames_published += 1
        if source_ns > 0:
            self.last_latency_ns = self.get_clock().now().nanoseconds - source_ns
        if self._tf is not None:
            self._tf.send([self.head_transform(frame.motion, frame.source_stamp_ns)])

    def head_transform(self, motion: "np.ndarray", stamp_ns: int):
        """``geometry_msgs/TransformStamped`` of ``head_frame`` in ``tf_parent_frame`` for a
        motion ``[56]``: the head pose ``[53:56]`` (FLAME axis-angle, radians) as a REP-103
        quaternion (:func:`rsatalker_core.head.frames.head_transform_rep103`; docs/ros.md
        "Frames"), zero translation (the parent frame is centred on the head's pivot)."""
        from rsatalker_core.config import HEAD_SLICE
        from rsatalker_core.head.frames import head_transform_rep103

        t, q = head_transform_rep103(np.asarray(motion, dtype=np.float64)[HEAD_SLICE])
        return transform_stamped(self.params.value("tf_parent_frame"), self.params.value("head_frame"), t, q,
                                 stamp_ns)

    def idle(self) -> bool:
        """True when no input waits for inference and no frame waits for publication."""
        with self._out_lock:
            return self._inbox.empty() and not self._out and not self._busy

    def _deactivate(self) -> None:
        """``on_deactivate`` (and ``destroy_node``): stop the inference thread."""
        if getattr(self, "_worker", None) is not None and self._worker.is_alive():
            self._enqueue(_STOP)
            self._worker.join(timeout=5.0)


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker motion_node [--ros-args -p relationship:=siblings ...]``."""
    return run_node(MotionNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
