"""What every rsatalker node's ``main()`` shares: init, spin, clean shutdown.

Follows ros2/demos ``demo_nodes_py``: ``rclpy.init``, build the node, spin, and in
``finally`` ``destroy_node()`` then ``rclpy.try_shutdown()``. Before anything else the
process is tuned (:func:`rsatalker_core.runtime.tune_process`: allocator, torch threads,
thread switch interval), as the ``rsatalker`` CLI and the bringup do. Works on Humble and Jazzy
(no ``with rclpy.init()``).

Also shared by the model-holding nodes (motion, render, face tracker):

* :class:`ManagedNode`: a ``rclpy.lifecycle.LifecycleNode`` skeleton (docs/ros.md
  "Lifecycle"): the model loads in ``on_configure``, publishers, subscriptions, timers and
  threads exist only while active, so nothing is published while inactive;
* :class:`DiagnosticsPublisher`: ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics``
  once a second from the counters a node keeps (rate, latency, drops, device), in the shape
  diagnostic_updater publishes (docs/ros.md "Diagnostics"; diagnostic_updater has no wheel).
"""

from __future__ import annotations

import dataclasses
import signal
import time
from typing import Any, Callable, Dict, List, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from rsatalker_core.errors import RsatalkerError
from rsatalker_core.runtime import tune_process
from rsatalker_ros.params import ParamSpec


def run_node(
    factory: Callable[[], Node],
    name: str,
    args: Optional[List[str]] = None,
    until: Optional[Callable[[Node], bool]] = None,
    context_survives_signals: bool = False,
) -> int:
    """Initialise rclpy, build a node with ``factory()``, spin it, shut down cleanly.

    Args:
        factory: builds the node (after ``rclpy.init``).
        name: logger name for errors raised while building it.
        args: command line (``sys.argv`` when ``None``); ROS arguments follow ``--ros-args``.
        until: spin until ``until(node)`` is true (e.g. a finished file player) instead of
            until shutdown.
        context_survives_signals: for nodes with threads of their own that publish (the
            training node). rclpy's own SIGINT handler shuts the context down at once, while
            such a thread may be publishing on it (a race that can crash the process).
            Instead, SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the spinning thread,
            so ``destroy_node()`` can stop the node's threads while the context is still up;
            rclpy shuts down after it.

    Returns:
        Process exit status: 0, or 1 when the node could not be built (the error is
        logged as one line naming the bad file or value).
    """
    tune_process()
    if context_survives_signals:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    else:
        rclpy.init(args=args)
    node = None
    # An executor of our own, shut down BEFORE destroy_node(): a spin_once() generator
    # of the global executor can otherwise keep the node's handle in use, and
    # destroy_node() then waits for it forever (seen with rclpy 7.1.6).
    executor = SingleThreadedExecutor()
    try:
        node = factory()
        executor.add_node(node)
        if until is None and not context_survives_signals:
            executor.spin()
        elif until is None:  # short waits, so the Python signal handler gets to run
            while rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        else:
            while rclpy.ok() and not until(node):
                executor.spin_once(timeout_sec=0.1)
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except RsatalkerError as exc:
        rclpy.logging.get_logger(name).fatal(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- lifecycle

#: Parameters every :class:`ManagedNode` declares (add to the node's ``EXTRA_PARAMS``).
LIFECYCLE_PARAMS = {
    "autostart": (True, ParamSpec(
        "configure and activate at start-up (a standalone `ros2 run`); false: start unconfigured and wait "
        "for lifecycle transitions (the launch file, the composed bringup or a lifecycle manager)")),
}


class LifecycleError(RsatalkerError):
    """A lifecycle transition that failed (the cause is chained and was logged)."""


class ManagedNode(LifecycleNode):
    """A ``rclpy.lifecycle.LifecycleNode`` whose active interfaces come and go with its state.

    Subclasses declare their parameters in the constructor, then call :meth:`start`, and
    implement:

    * :meth:`_configure`: load the model (``on_configure``; an exception fails the transition,
      logged, back to *unconfigured*, and kept in :attr:`lifecycle_error`);
    * :meth:`_activate`: create publishers, subscriptions, timers and threads
      (``on_activate``); every publisher, subscription, timer, client and service it creates
      is destroyed again on deactivation, so an inactive node publishes nothing and hears
      nothing;
    * :meth:`_deactivate`: stop the threads :meth:`_activate` started (called before its
      entities are destroyed);
    * :meth:`_cleanup`: drop the model (``on_cleanup``, ``on_shutdown``, ``destroy_node``).

    States (ROS 2 managed nodes): unconfigured -> configure -> inactive -> activate -> active
    -> deactivate -> inactive -> cleanup -> unconfigured; shutdown from any of them.
    """

    def __init__(self, node_name: str, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.lifecycle_error: Optional[BaseException] = None
        self._active_entities: Optional[List[tuple]] = None
        self._configured = False

    # ---- what subclasses implement
    def _configure(self) -> None:
        """Load what the node needs (model, renderer, tracker)."""

    def _activate(self) -> None:
        """Create publishers, subscriptions, timers and threads."""

    def _deactivate(self) -> None:
        """Stop the threads started by :meth:`_activate`."""

    def _cleanup(self) -> None:
        """Release what :meth:`_configure` loaded."""

    # ---- driving it
    def start(self, autostart: Optional[bool] = None) -> None:
        """End of the subclass constructor: with ``autostart``, configure and activate now
        (``None``: the node's ``autostart`` parameter, declared in ``self.params``).

        Raises:
            RsatalkerError: the error that failed the configure or activate transition (a
                ``LifecycleError`` chaining it when it was no RsatalkerError).
        """
        if autostart is None:
            autostart = bool(self.params.value("autostart"))
        if not autostart:
            self.get_logger().info("unconfigured: waiting for the configure and activate transitions")
            return
        for name, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                exc = self.lifecycle_error
                if isinstance(exc, RsatalkerError):
                    raise exc
                raise LifecycleError(f"{self.get_name()}: {name} failed: {exc!r}") from exc

    @property
    def lifecycle_state(self) -> str:
        """``"unconfigured"``, ``"inactive"``, ``"active"`` or ``"finalized"`` (or a transition)."""
        return self._state_machine.current_state[1]

    # ---- transitions
    def _fail(self, what: str, exc: BaseException) -> TransitionCallbackReturn:
        self.lifecycle_error = exc
        self.get_logger().error(f"{what} failed: {type(exc).__name__}: {exc}")
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.lifecycle_error = None
        try:
            self._configure()
        except Exception as exc:
            self._unload(force=True)
            return self._fail("configure", exc)
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        before = self._entities()
        self.lifecycle_error = None
        try:
            self._activate()
        except Exception as exc:
            self._active_entities = [e for e in self._entities() if e not in before]
            self._close()
            return self._fail("activate", exc)
        self._active_entities = [e for e in self._entities() if e not in before]
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Deactivate and clean up (threads stopped, model released), then destroy the node."""
        self._close()
        self._unload()
        super().destroy_node()

    # ---- bookkeeping
    def _entities(self) -> List[tuple]:
        return ([("publisher", e) for e in self.publishers] + [("subscription", e) for e in self.subscriptions]
                + [("timer", e) for e in self.timers] + [("client", e) for e in self.clients]
                + [("service", e) for e in self.services])

    def _close(self) -> None:
        if self._active_entities is None:
            return
        try:
            self._deactivate()
        finally:
            for kind, entity in reversed(self._active_entities):
                getattr(self, f"destroy_{kind}")(entity)
            self._active_entities = None

    def _unload(self, force: bool = False) -> None:
        if self._configured or force:
            self._configured = False
            self._cleanup()


# --------------------------------------------------------------------------- diagnostics

#: Seconds between two DiagnosticArray messages (diagnostic_updater's default period).
DIAGNOSTICS_PERIOD_S = 1.0
#: Topic diagnostic_updater and diagnostic_aggregator use (absolute: one per robot).
DIAGNOSTICS_TOPIC = "/diagnostics"


@dataclasses.dataclass
class Health:
    """What a node reports: ``published`` (total outputs so far; the rate comes from its
    increase), ``dropped`` (counter name -> total), ``latency_ms`` (latest, ``None`` before
    the first output), ``device`` (e.g. ``"cpu"``, ``"cuda:0"``), ``extra`` (more key/values)."""

    published: int
    dropped: Dict[str, int]
    latency_ms: Optional[float]
    device: str
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)


class DiagnosticsPublisher:
    """``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` every ``period_s`` seconds.

    One ``DiagnosticStatus`` named ``"<node name>: <task>"`` (diagnostic_updater's naming),
    ``hardware_id`` = the device, with key/values ``rate_hz`` (outputs per second over the
    last period), ``latency_ms``, ``dropped`` (all drop counters together, since start),
    ``dropped_last_period``, ``device``, ``published`` and each drop counter by name, plus
    ``Health.extra``. Level WARN while something was dropped in the last period, else OK.
    Create it in the node's active phase (it owns a publisher and a timer).

    Args:
        node: the node (its clock drives the period).
        task: what is measured, e.g. ``"motion"``.
        health: returns the node's :class:`Health` (called from the timer).
    """

    def __init__(self, node: Node, task: str, health: Callable[[], Health], period_s: float = DIAGNOSTICS_PERIOD_S):
        from diagnostic_msgs.msg import DiagnosticArray

        self._node, self._health, self.name = node, health, f"{node.get_name()}: {task}"
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 1)
        self._last: Optional[tuple] = None  # (monotonic s, published, dropped)
        self.timer = node.create_timer(period_s, self.publish)

    def status(self):
        """The ``diagnostic_msgs/DiagnosticStatus`` for now (updates the rate's reference)."""
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        h = self._health()
        now = time.monotonic()
        dropped = int(sum(h.dropped.values()))
        rate, new_drops = 0.0, 0
        if self._last is not None and now > self._last[0]:
            rate = (h.published - self._last[1]) / (now - self._last[0])
            new_drops = dropped - self._last[2]
        self._last = (now, h.published, dropped)
        values = {"rate_hz": f"{rate:.2f}",
                  "latency_ms": "nan" if h.latency_ms is None else f"{h.latency_ms:.1f}",
                  "dropped": str(dropped), "dropped_last_period": str(new_drops),
                  "device": h.device, "published": str(h.published)}
        values.update({k: str(v) for k, v in h.dropped.items()})
        values.update({k: str(v) for k, v in h.extra.items()})
        st = DiagnosticStatus(name=self.name, hardware_id=h.device,
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
        if new_drops > 0:
            st.level, st.message = DiagnosticStatus.WARN, f"{new_drops} dropped in the last period"
        else:
            st.level, st.message = DiagnosticStatus.OK, f"{rate:.1f} Hz"
        return st

    def publish(self) -> None:
        """Publish one DiagnosticArray (the timer calls this)."""
        from diagnostic_msgs.msg import DiagnosticArray

        from rsatalker_ros.conversions import make_header

        try:
            st = self.status()
        except Exception as exc:  # a report must never take the node down
            self._node.get_logger().warning(f"diagnostics: {type(exc).__name__}: {exc}", throttle_duration_sec=10.0)
            return
        self._pub.publish(DiagnosticArray(header=make_header(self._node.get_clock().now().nanoseconds),
                                          status=[st]))
