"""Helpers for tests that run rsatalker's nodes for real, in separate processes.

* :func:`free_domain_id` / :func:`ros_env`: an isolated ``ROS_DOMAIN_ID`` per test, with
  discovery kept on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``;
  ``ROS_LOCALHOST_ONLY=1`` on Humble), so parallel tests never see each other's topics and
  no DDS traffic leaves the loopback interface.
* :class:`NodeProcess`: ``python -m <module> --ros-args ...`` as a subprocess with its log
  in a file; :meth:`NodeProcess.stop` sends SIGINT (a clean rclpy shutdown) and returns
  the exit status.
* :class:`RosHarness`: an rclpy context + node + executor in the test process, with
  :meth:`RosHarness.spin_until`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
_used_domains: set = set()


def free_domain_id() -> int:
    """A ROS domain id in [100, 229] not used before by this process (random start)."""
    rng = random.SystemRandom()
    while True:
        d = rng.randint(100, 229)
        if d not in _used_domains:
            _used_domains.add(d)
            return d


def ros_env(domain_id: int, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for node subprocesses: the domain, localhost-only discovery, the repo on
    ``PYTHONPATH``, one torch thread per process and unbuffered, uncoloured logs."""
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id),
        "PYTHONPATH": os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH", "")] if p]),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
    })
    env.update(localhost_env())
    env.update(extra or {})
    return env


def localhost_env() -> Dict[str, str]:
    """Discovery on this machine only: ROS_AUTOMATIC_DISCOVERY_RANGE (Iron and later);
    Humble only knows ROS_LOCALHOST_ONLY (deprecated, and noisy, on Jazzy)."""
    if os.environ.get("ROS_DISTRO", "") == "humble":
        return {"ROS_LOCALHOST_ONLY": "1"}
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def isolated_context():
    """A fresh, initialised ``rclpy.Context`` on its own domain with localhost-only
    discovery, for in-process tests. Shut it down with ``rclpy.shutdown(context=ctx)``."""
    import rclpy

    os.environ.update(localhost_env())
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=free_domain_id())
    return ctx


class NodeProcess:
    """A node ``main()`` run as ``python -m module [args] --ros-args [ros_args]``.

    Args:
        module: e.g. ``"rsatalker_ros.nodes.motion_node"``.
        ros_args: after ``--ros-args`` (e.g. ``["-p", "relationship:=couple"]``).
        env: from :func:`ros_env`.
        log_path: stdout+stderr go here.
        args: plain arguments before ``--ros-args`` (for the bringup).
    """

    def __init__(
        self,
        module: str,
        ros_args: Sequence[str],
        env: Dict[str, str],
        log_path: Path,
        args: Sequence[str] = (),
    ):
        self.module = module
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", module, *args]
        if ros_args:
            cmd += ["--ros-args", *ros_args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; kill it after ``timeout`` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.module} did not exit within {timeout} s:\n{self.log()[-3000:]}")
        finally:
            self._log.close()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (clean shutdown), wait, return the exit status; SIGKILL if it hangs."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9
        finally:
            self._log.close()


class RosHarness:
    """rclpy in the test process: its own context on ``domain_id``, one node, one executor.

    Use as a context manager; it shuts the context down on exit.
    """

    def __init__(self, domain_id: int, node_name: str = "rsatalker_test"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        os.environ.update(localhost_env())
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(node_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
        """Spin until ``predicate()`` is true (returns True) or ``timeout`` s pass (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=step)
        return predicate()

    def spin_for(self, seconds: float) -> None:
        """Spin for ``seconds``."""
        self.spin_until(lambda: False, seconds)

    def node_names(self) -> List[str]:
        return [name for name, _ in self.node.get_node_names_and_namespaces()]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> "RosHarness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
