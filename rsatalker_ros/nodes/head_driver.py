"""Head driver node: the avatar's FLAME parameters -> joint commands for a physical head.

Subscribes ``avatar/flame_params`` (FlameParams, reliable); for each frame runs
:class:`rsatalker_core.robot.head_driver.HeadDriver` (linear maps from head, jaw, eye and
expression channels to named joints, One-Euro smoothing, latency lead, position / velocity /
acceleration limits; configured by the YAML file ``head_config``, e.g.
``config/head_driver_example.yaml``) and publishes, per the file's ``output``:

* ``head/joint_states`` (``sensor_msgs/JointState``): names, positions (joint units,
  radians for revolute joints) and velocities (units/s), stamped with the receive time;
* ``head/joint_trajectory`` (``trajectory_msgs/JointTrajectory``): one point with positions,
  velocities and accelerations, ``time_from_start`` = ``trajectory_time_s``, header stamp 0
  ("start now"), for ros2_control's joint_trajectory_controller: remap it to
  ``/<controller>/joint_trajectory``.

A malformed frame (wrong lengths, NaN or inf) is dropped with a throttled warning; nothing
is published for it. Topic names come from :mod:`rsatalker_core.io.session_topics`.

Parameters: ``head_config`` (path of the YAML file; required), ``qos_overrides.*``.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from rsatalker.msg import FlameParams
from rsatalker_core.errors import ConfigError
from rsatalker_core.io import session_topics as st
from rsatalker_core.robot.head_config import load_head_driver_config
from rsatalker_core.robot.head_driver import HeadDriver, JointCommand
from rsatalker_ros import topics
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import ParameterSet, ParamSpec

NODE_NAME = "head_driver"
CONFIG_PREFIXES: List[str] = []
EXTRA_PARAMS = {
    "head_config": ("", ParamSpec("head driver YAML (joints, maps, limits, smoothing, lead); "
                                  "e.g. config/head_driver_example.yaml")),
}


class HeadDriverNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Raises:
        ConfigError: ``head_config`` is empty, missing or invalid.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = ParameterSet(self, CONFIG_PREFIXES, EXTRA_PARAMS)
        self.params.declare()
        path = self.params.value("head_config")
        if not path:
            raise ConfigError("head_driver: parameter 'head_config' (a YAML file, see "
                              "config/head_driver_example.yaml) is required")
        self.config = load_head_driver_config(path)
        self.driver = HeadDriver(self.config)
        out = self.config.output
        self.joint_pub = self.traj_pub = None
        if out in ("joint_state", "both"):
            self.joint_pub = self.create_publisher(JointState, st.HEAD_JOINT_STATES.name,
                                                   topics.publisher_qos(st.HEAD_JOINT_STATES),
                                                   qos_overriding_options=topics.overriding())
        if out in ("trajectory", "both"):
            self.traj_pub = self.create_publisher(JointTrajectory, st.HEAD_JOINT_TRAJECTORY.name,
                                                  topics.publisher_qos(st.HEAD_JOINT_TRAJECTORY),
                                                  qos_overriding_options=topics.overriding())
        self.create_subscription(FlameParams, st.AVATAR_FLAME.name, self._on_flame,
                                 topics.subscription_qos(st.AVATAR_FLAME),
                                 qos_overriding_options=topics.overriding())
        self.published = 0
        self.get_logger().info(f"driving {len(self.driver.names)} joints ({', '.join(self.driver.names)}) "
                               f"from {path}, lead {self.config.lead_ms:g} ms, output {out}")

    def _on_flame(self, msg: FlameParams) -> None:
        now = self.get_clock().now()
        motion = np.concatenate([np.asarray(msg.expression, np.float64), np.asarray(msg.jaw_pose, np.float64),
                                 np.asarray(msg.head_pose, np.float64)])
        cmd = self.driver.step(motion, np.asarray(msg.eye_pose, np.float64), now.nanoseconds * 1e-9)
        if cmd is None:
            self.get_logger().warning(f"dropped FLAME frame {msg.frame_index}: {self.driver.last_drop} "
                                      f"({self.driver.dropped} dropped so far)", throttle_duration_sec=2.0)
            return
        self.publish(cmd, now.to_msg())

    def publish(self, cmd: JointCommand, stamp: Any) -> None:
        """Publish ``cmd`` as JointState and/or JointTrajectory (see the module docstring)."""
        if self.joint_pub is not None:
            js = JointState()
            js.header.stamp = stamp
            js.name = list(cmd.names)
            js.position = [float(x) for x in cmd.position]
            js.velocity = [float(x) for x in cmd.velocity]
            self.joint_pub.publish(js)
        if self.traj_pub is not None:
            tr = JointTrajectory()
            tr.joint_names = list(cmd.names)
            t = self.config.trajectory_time_s
            tr.points = [JointTrajectoryPoint(
                positions=[float(x) for x in cmd.position], velocities=[float(x) for x in cmd.velocity],
                accelerations=[float(x) for x in cmd.acceleration],
                time_from_start=Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9))))]
            self.traj_pub.publish(tr)
        self.published += 1


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker head_driver --ros-args -p head_config:=config/head_driver_example.yaml``."""
    return run_node(HeadDriverNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
