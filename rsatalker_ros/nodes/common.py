"""What every rsatalker node's ``main()`` shares: init, spin, clean shutdown.

Follows ros2/demos ``demo_nodes_py``: ``rclpy.init``, build the node, spin, and in
``finally`` ``destroy_node()`` then ``rclpy.try_shutdown()``. Works on Humble and Jazzy
(no ``with rclpy.init()``).
"""

from __future__ import annotations

from typing import Callable, List, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from rsatalker_core.errors import RsatalkerError


def run_node(
    factory: Callable[[], Node],
    name: str,
    args: Optional[List[str]] = None,
    until: Optional[Callable[[Node], bool]] = None,
) -> int:
    """Initialise rclpy, build a node with ``factory()``, spin it, shut down cleanly.

    Args:
        factory: builds the node (after ``rclpy.init``).
        name: logger name for errors raised while building it.
        args: command line (``sys.argv`` when ``None``); ROS arguments follow ``--ros-args``.
        until: spin until ``until(node)`` is true (e.g. a finished file player) instead of
            until shutdown.

    Returns:
        Process exit status: 0, or 1 when the node could not be built (the error is
        logged as one line naming the bad file or value).
    """
    rclpy.init(args=args)
    node = None
    # An executor of our own, shut down BEFORE destroy_node(): a spin_once() generator
    # of the global executor can otherwise keep the node's handle in use, and
    # destroy_node() then waits for it forever (seen with rclpy 7.1.6).
    executor = SingleThreadedExecutor()
    try:
        node = factory()
        executor.add_node(node)
        if until is None:
            executor.spin()
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
