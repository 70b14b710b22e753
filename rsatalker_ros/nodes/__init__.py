"""rsatalker's ROS 2 nodes; each module has a Node subclass and a ``main()``.

:data:`EXECUTABLES` maps each installed executable (``lib/rsatalker/<name>``, see
CMakeLists.txt; ``rsatalker_<name>`` console scripts from setup.py) to its module. Node
modules define ``NODE_NAME``, ``CONFIG_PREFIXES`` and ``EXTRA_PARAMS``, from which
:func:`rsatalker_ros.params.parameter_names` lists every parameter the node declares.
"""

EXECUTABLES = {
    "audio_capture": "rsatalker_ros.nodes.audio_capture",
    "audio_player": "rsatalker_ros.nodes.audio_player",
    "motion_node": "rsatalker_ros.nodes.motion_node",
    "render_node": "rsatalker_ros.nodes.render_node",
    "recorder": "rsatalker_ros.nodes.recorder",
    "training_node": "rsatalker_ros.nodes.training_node",
    "head_driver": "rsatalker_ros.nodes.head_driver",
    "audio_adapter": "rsatalker_ros.nodes.audio_adapter",
    "face_tracker": "rsatalker_ros.nodes.face_tracker",
    "video_player": "rsatalker_ros.nodes.video_player",
}
