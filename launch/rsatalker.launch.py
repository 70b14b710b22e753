"""Launch the live rsatalker graph: audio in -> motion_node -> render_node.

    ros2 launch rsatalker rsatalker.launch.py                       # microphone
    ros2 launch rsatalker rsatalker.launch.py input_source:=file \\
        self_audio:=/data/b.wav partner_audio:=/data/a.wav relationship:=parent_child

Arguments: relationship, device, input_source (mic | file), self_audio, partner_audio
(played in either mode when given), config_file (rsatalker YAML with model/render sizes,
default share/rsatalker/config/default.yaml), params_file (ROS parameters, default
share/rsatalker/config/ros.yaml). Precedence: these arguments > params_file > config_file.
record (default false) and bag_path: with record:=true, ``ros2 bag record -s mcap`` records the
session topics (rsatalker_core.io.session_topics: avatar FLAME parameters and images, self and
partner audio, partner FLAME parameters, relationship) into bag_path (empty: rosbag2's own timestamped name); evaluate it
with ``rsatalker evaluate-bag <bag_path>``.
namespace (default empty): every node, topic and the bag's topic list go under it (the
parameter file's '/**/<node>' keys still apply); use_sim_time (default false): the nodes take
/clock (e.g. from ``ros2 bag play --clock``); log_level (debug, info, warn, error, fatal;
default info).
role (screen | robot, default screen): on a screen the microphone (or self_audio) is the
avatar's own speech; on a robot the robot's speech (its TTS output, robot_speech_topic, as
robot_speech_format chunk | pcm16 | audio_common at robot_speech_rate Hz) becomes audio/self
through the audio_adapter node and the microphone hears the partner (audio/partner).
partner_video (a video file played as the partner's camera and microphone through the video_player
node, its face tracked by face_tracker into partner/flame_params) and partner_camera (true: face_tracker
on a camera driver's partner/camera/image) give the motion node the partner's face.
autostart (default true): face_tracker, motion_node and render_node are lifecycle (managed)
nodes, started unconfigured; with autostart the launch file configures each (model load) and
activates it once it is inactive; autostart:=false leaves the transitions to a lifecycle
manager or ``ros2 lifecycle set`` (docs/ros.md "Lifecycle").
Works with Humble and later (no EqualsSubstitution).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from rsatalker_core.io import session_topics as st
from rsatalker_core.io.session_topics import session_topic_names


def _recorder(context):
    """``ros2 bag record -s mcap [-o bag_path] <session topics>`` when record:=true, the topics
    resolved in the launch namespace (``/robot1/avatar/flame_params``), so the bag holds the
    topics the nodes really use."""
    if LaunchConfiguration("record").perform(context) != "true":
        return []
    namespace = LaunchConfiguration("namespace").perform(context)
    bag_path = LaunchConfiguration("bag_path").perform(context)
    cmd = ["ros2", "bag", "record", "-s", "mcap"] + (["-o", bag_path] if bag_path else [])
    return [ExecuteProcess(cmd=cmd + session_topic_names(absolute=True, namespace=namespace), output="screen")]


def _text(value):
    """A string parameter that launch must not re-type as YAML (empty strings, 'on', '1e3')."""
    return ParameterValue(value, value_type=str)


def _autostart(node: LifecycleNode, condition) -> list:
    """Configure a lifecycle node as soon as it runs, and activate it once it is inactive."""
    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    return [
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, goal_state="inactive",
                                               entities=[change(Transition.TRANSITION_ACTIVATE)]),
                             condition=condition),
        EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                    transition_id=Transition.TRANSITION_CONFIGURE), condition=condition),
    ]


def generate_launch_description():
    share = FindPackageShare("rsatalker")
    relationship = LaunchConfiguration("relationship")
    device = LaunchConfiguration("device")
    input_source = LaunchConfiguration("input_source")
    self_audio = LaunchConfiguration("self_audio")
    partner_audio = LaunchConfiguration("partner_audio")
    config_file = LaunchConfiguration("config_file")
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    log_level = LaunchConfiguration("log_level")
    role = LaunchConfiguration("role")
    robot_speech_topic = LaunchConfiguration("robot_speech_topic")
    robot_speech_format = LaunchConfiguration("robot_speech_format")
    robot_speech_rate = LaunchConfiguration("robot_speech_rate")

    arguments = [
        DeclareLaunchArgument("role", default_value="screen", choices=["screen", "robot"],
                              description="screen: microphone = the avatar's speech; robot: the robot's "
                              "speech (robot_speech_topic) = self, microphone = partner"),
        DeclareLaunchArgument("robot_speech_topic", default_value=st.ROBOT_SPEECH.name,
                              description="role:=robot: the robot's TTS audio topic"),
        DeclareLaunchArgument("robot_speech_format", default_value="chunk",
                              choices=["chunk", "pcm16", "audio_common"],
                              description="role:=robot: rsatalker/AudioChunk, std_msgs/UInt8MultiArray PCM16, "
                              "or audio_common_msgs/AudioData"),
        DeclareLaunchArgument("robot_speech_rate", default_value="16000",
                              description="role:=robot: sample rate of PCM16 speech, Hz"),
        DeclareLaunchArgument(
            "relationship",
            default_value="couple",
            description="siblings, parent_child, couple or superior_subordinate (changeable live: "
            "ros2 param set /motion_node relationship siblings)",
        ),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device: cpu, cuda, cuda:N"),
        DeclareLaunchArgument(
            "input_source",
            default_value="mic",
            choices=["mic", "file"],
            description="mic: capture the avatar's speaker; file: play self_audio",
        ),
        DeclareLaunchArgument("self_audio", default_value="", description="the avatar's speech (input_source:=file)"),
        DeclareLaunchArgument("partner_audio", default_value="", description="the partner's speech file (optional)"),
        DeclareLaunchArgument("partner_video", default_value="",
                              description="a video file played at real time as the partner's camera "
                              "(partner/camera/image) and microphone (audio/partner unless partner_audio is "
                              "given); face_tracker -> partner/flame_params"),
        DeclareLaunchArgument("partner_camera", default_value="false", choices=["true", "false"],
                              description="run face_tracker on partner/camera/image from a camera driver"),
        DeclareLaunchArgument(
            "config_file",
            default_value=PathJoinSubstitution([share, "config", "default.yaml"]),
            description="rsatalker config YAML (model, speech encoder, render size); "
            "config/test_small.yaml is a fast CPU setting",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "ros.yaml"]),
            description="ROS parameters of the nodes",
        ),
        DeclareLaunchArgument(
            "record",
            default_value="false",
            choices=["true", "false"],
            description="record the session topics with `ros2 bag record -s mcap` (rosbag2 needed)",
        ),
        DeclareLaunchArgument(
            "bag_path",
            default_value="",
            description="directory of the recorded bag (must not exist); empty = rosbag2's timestamped name",
        ),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of every node and topic (e.g. robot1); empty = the root"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="use /clock (simulation or bag playback with --clock)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              choices=["debug", "info", "warn", "error", "fatal"],
                              description="log level of every node"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="configure and activate the lifecycle nodes (face_tracker, motion_node, "
                                          "render_node); false: leave them unconfigured for a lifecycle manager"),
    ]
    use_file = IfCondition(PythonExpression(["'", input_source, "' == 'file' and '", role, "' == 'screen'"]))
    is_robot = IfCondition(PythonExpression(["'", role, "' == 'robot'"]))
    mic_role = PythonExpression(["'partner' if '", role, "' == 'robot' else 'self'"])
    use_mic = IfCondition(PythonExpression(["'", input_source, "' == 'mic'"]))
    has_partner = IfCondition(PythonExpression(["'", partner_audio, "' != ''"]))
    # What every node shares: the namespace, the clock and the log level.
    common = {"namespace": namespace, "ros_arguments": ["--log-level", log_level], "output": "screen"}
    sim_time = {"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}

    nodes = [
        Node(
            package="rsatalker",
            executable="audio_capture",
            name="audio_capture",
            parameters=[params_file, {"config_file": _text(config_file), "role": _text(mic_role)}, sim_time],
            condition=use_mic,
            **common,
        ),
        Node(
            package="rsatalker",
            executable="audio_adapter",
            name="audio_adapter",
            parameters=[{"role": "self", "input_format": _text(robot_speech_format),
                         "input_topic": _text(robot_speech_topic),
                         "sample_rate": ParameterValue(robot_speech_rate, value_type=int)}, sim_time],
            condition=is_robot,
            **common,
        ),
        Node(
            package="rsatalker",
            executable="audio_player",
            name="audio_player_self",
            parameters=[params_file, {"config_file": _text(config_file), "file": _text(self_audio), "role": "self"}, sim_time],
            condition=use_file,
            **common,
        ),
        Node(
            package="rsatalker",
            executable="audio_player",
            name="audio_player_partner",
            parameters=[params_file, {"config_file": _text(config_file), "file": _text(partner_audio), "role": "partner"}, sim_time],
            condition=has_partner,
            **common,
        ),
        Node(
            package="rsatalker",
            executable="video_player",
            name="video_player",
            parameters=[params_file, {"config_file": _text(config_file), "file": _text(LaunchConfiguration("partner_video")),
                                      "publish_audio": ParameterValue(PythonExpression(
                                          ["'", LaunchConfiguration("partner_audio"), "' == ''"]), value_type=bool),
                                      "wait_for_subscribers": 1}, sim_time],
            condition=IfCondition(PythonExpression(["'", LaunchConfiguration("partner_video"), "' != ''"])),
            **common,
        ),
        LifecycleNode(
            package="rsatalker",
            executable="face_tracker",
            name="face_tracker",
            parameters=[params_file, {"config_file": _text(config_file), "device": _text(device), "autostart": False},
                        sim_time],
            condition=IfCondition(PythonExpression(["'", LaunchConfiguration("partner_video"), "' != '' or '",
                                                    LaunchConfiguration("partner_camera"), "' == 'true'"])),
            **common,
        ),
        LifecycleNode(
            package="rsatalker",
            executable="motion_node",
            name="motion_node",
            parameters=[
                params_file,
                {"config_file": _text(config_file), "relationship": _text(relationship), "device": _text(device),
                 "autostart": False},
                sim_time,
            ],
            **common,
        ),
        LifecycleNode(
            package="rsatalker",
            executable="render_node",
            name="render_node",
            parameters=[params_file, {"config_file": _text(config_file), "device": _text(device), "autostart": False},
                        sim_time],
            **common,
        ),
    ]
    # Lifecycle nodes start unconfigured (their autostart parameter is false); the launch
    # file drives them when its autostart argument is true (docs/ros.md "Lifecycle").
    lifecycle = [a for n in nodes if isinstance(n, LifecycleNode)
                 for a in _autostart(n, IfCondition(LaunchConfiguration("autostart")))]
    recorders = [OpaqueFunction(function=_recorder)]
    return LaunchDescription(arguments + nodes + lifecycle + recorders)
