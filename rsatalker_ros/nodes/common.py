"""What every rsatalker node's ``main()`` shares: init, spin, clean shutdown.

Follows ros2/demos ``demo_nodes_py``: ``rclpy.init``, build the node, spin, and in
``finally`` ``destroy_node()`` then ``rclpy.try_shutdown()``. Before anything else the
process is tuned (:func:`rsatalker_core.runtime.tune_process`: allocator, torch threads,
thread switch interval), as the ``rsatalker`` CLI and the bringup do. Works on Humble and Jazzy
(no ``with rclpy.init()``).
"""

from __future__ import annotations

import signal
from typing import Any, Callable, List, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from rsatalker_core.errors import RsatalkerError
from rsatalker_core.runtime import tune_process


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
