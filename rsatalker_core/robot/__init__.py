"""Driving a physical robot head from the avatar's FLAME motion (ROS-free).

* :mod:`~rsatalker_core.robot.head_config`: the YAML configuration (joints, their linear maps
  from FLAME channels, limits, smoothing, latency lead).
* :mod:`~rsatalker_core.robot.head_mapping`: FLAME frame -> named channels (head, jaw and eye
  rotations as Euler angles, expression coefficients) -> joint targets.
* :mod:`~rsatalker_core.robot.limits`: position, velocity and acceleration limiting that
  never exceeds any of the three.
* :mod:`~rsatalker_core.robot.head_driver`: the pipeline the ``head_driver`` node runs per
  frame (validate, map, smooth, lead, limit).
"""
