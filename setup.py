"""Plain-pip install of rsatalker's Python packages (``pip install -e .``).

The ROS package build (colcon / ament_cmake) uses CMakeLists.txt instead; it generates the
messages in msg/ and installs these same packages with ament_cmake_python.
"""

import glob

from setuptools import find_packages, setup

NODES = {
    "audio_capture": "rsatalker_ros.nodes.audio_capture:main",
    "audio_player": "rsatalker_ros.nodes.audio_player:main",
    "motion_node": "rsatalker_ros.nodes.motion_node:main",
    "render_node": "rsatalker_ros.nodes.render_node:main",
    "recorder": "rsatalker_ros.nodes.recorder:main",
    "training_node": "rsatalker_ros.nodes.training_node:main",
    "face_tracker": "rsatalker_ros.nodes.face_tracker:main",
    "video_player": "rsatalker_ros.nodes.video_player:main",
    "head_driver": "rsatalker_ros.nodes.head_driver:main",
    "audio_adapter": "rsatalker_ros.nodes.audio_adapter:main",
    "bringup": "rsatalker_ros.bringup:main",
}

setup(
    name="rsatalker",
    version="0.1.0",
    description="Socially-aware talking-head avatar for two-person conversation (RSATalker) on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["rsatalker_core", "rsatalker_core.*", "rsatalker_ros", "rsatalker_ros.*"]),
    package_data={"rsatalker_core": ["assets/*"]},
    data_files=[
        ("share/rsatalker", ["package.xml"]),
        ("share/rsatalker/launch", glob.glob("launch/*.py")),
        ("share/rsatalker/config", glob.glob("config/*.yaml")),
    ],
    entry_points={
        "console_scripts": ["rsatalker=rsatalker_core.cli:main"]
        + [f"rsatalker_{name}={target}" for name, target in NODES.items()],
    },
)
