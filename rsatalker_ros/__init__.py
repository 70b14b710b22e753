"""ROS 2 side of rsatalker: message conversions, nodes and the composed bringup.

Messages (``rsatalker.msg``: FlameParams, AudioChunk, Relationship) are generated from
msg/ by the ament_cmake build or ``scripts/build_msgs.sh``. Everything model-related lives
in :mod:`rsatalker_core`, which never imports ROS.
"""
