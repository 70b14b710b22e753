"""The whole rsatalker graph in ONE process (manual composition), for machines without
``ros2 launch``.

Nodes: two audio players (``--input-source file``) or a microphone for the avatar's
speaker plus an optional partner file (``--input-source mic``), the motion node, the
render node (unless ``--no-render``) and a recorder, all on one executor (``--executor``:
rclpy's C++ ``EventsExecutor`` by default, else a
:class:`~rclpy.executors.MultiThreadedExecutor`). Topics are the ordinary ones
(:mod:`rsatalker_ros.topics`), so other processes can watch or feed the same graph.

Performance on a small CPU (docs/ros.md): the heavy work runs in the nodes' own threads (the
motion node's inference, the render node's rasterizer), so the executor only moves messages.
rclpy's Python executors rebuild a wait set of every node's entities for each callback
(about a quarter of a core for this graph on a 2-core machine); the events executor
dispatches in C++ (a few percent of a core). The render thread runs at a lower scheduling
priority than inference (render node ``thread_nice``), so when the CPU is short the image
rate drops first and the motion node keeps 25 fps.

Example::

    python -m rsatalker_ros.bringup --self-audio b.wav --partner-audio a.wav \\
        --relationship parent_child --duration 8 --output-dir out/ \\
        --config config/test_small.yaml

writes ``out/motion.npz``, ``out/avatar.mp4`` (with the avatar's speech) and
``out/summary.json``. ROS arguments may follow ``--ros-args`` (e.g. ``--params-file
config/ros.yaml``); the command-line options above override them.

The partner's face: ``--partner-video FILE`` plays a video at real time as the partner's
camera and microphone (:mod:`rsatalker_ros.nodes.video_player`) and runs the
``face_tracker`` node on it, so the motion node hears the partner and sees the partner's
tracked face on ``partner/flame_params``; ``--partner-camera`` runs the face tracker on a
camera driver's ``partner/camera/image``.

Roles (``--role``, as the launch file's ``role``; docs/ros.md "Robot role"): on a
``screen`` (default) the avatar's speech is ``--self-audio`` or the microphone and the
partner's is ``--partner-audio``; on a ``robot`` the avatar's speech is the robot's own TTS
output on ``--robot-speech-topic`` (``--robot-speech-format`` chunk | pcm16 | audio_common),
relayed to ``audio/self`` by the ``audio_adapter`` node, and the partner's speech is the
microphone (or ``--partner-audio`` / ``--partner-video``). :func:`audio_sources` says which
node feeds which role.

Lifecycle: the motion, render and face-tracker nodes are managed nodes (docs/ros.md
"Lifecycle"); the bringup builds them unconfigured, then configures all of them (model
loads) and activates all of them itself (:func:`bring_up`).

With file input the run ends when both files have played and the pipeline has drained;
with a microphone or as a robot (live speech) after ``--duration`` seconds (0: at Ctrl-C).

Bad input (unreadable audio, unknown relationship or device, unusable config, an
``--output-dir`` or ``--bag`` that cannot be written) is reported before the graph starts as
one ``error:`` line with exit status 2. The recordings are written and the bag is finished
whatever ends the run (end of input, Ctrl-C, an error).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, List, Optional, Tuple

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.utilities import remove_ros_args

from rsatalker_core.config import load_config
from rsatalker_core.runtime import tune_process
from rsatalker_core.speech.audio import load_audio
from rsatalker_core.errors import RsatalkerError
from rsatalker_core.io import session_topics as st
from rsatalker_core.relationship import Relationship

#: After the last audio chunk: how long the graph must stay idle before the run ends, and
#: the most to wait for motion inference to drain, seconds.
IDLE_SECONDS = 0.5
DRAIN_TIMEOUT = 30.0
#: File input: frames the motion node may queue for their 25 fps slot (10 s), so a
#: recording stays complete when inference falls behind (the live default drops old ones).
FILE_QUEUE_FRAMES = 250
#: ``--executor`` choices (see :func:`make_executor`).
EXECUTORS = ("events", "multi")
#: ``--role`` choices: where the avatar's own speech comes from (module docstring).
ROLES = ("screen", "robot")
#: ``--robot-speech-format`` choices (the audio_adapter node's ``input_format``).
ROBOT_SPEECH_FORMATS = ("chunk", "pcm16", "audio_common")


def build_parser() -> argparse.ArgumentParser:
    """The bringup's command-line options."""
    p = argparse.ArgumentParser(
        prog="rsatalker_bringup",
        description="Run the rsatalker graph (audio -> motion -> render -> recorder) in one process.",
    )
    p.add_argument("--self-audio", default="", help="the avatar's speech (file input)")
    p.add_argument("--partner-audio", default="", help="the partner's speech (optional)")
    p.add_argument("--input-source", choices=("file", "mic"), default=None,
                   help="file: play --self-audio; mic: capture the avatar's speaker (default: file "
                        "when --self-audio is given)")
    p.add_argument("--relationship", default=None, help=f"one of {', '.join(Relationship.names())}")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--config", default="", help="rsatalker config YAML (e.g. config/test_small.yaml)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="seconds to play/capture; 0 = whole file (file) or until Ctrl-C (mic)")
    p.add_argument("--start", type=float, default=0.0, help="offset into the audio files, seconds")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor of the files")
    p.add_argument("--output-dir", default="", help="write motion.npz, avatar.mp4, summary.json here")
    p.add_argument("--no-render", action="store_true", help="motion only (no render node)")
    p.add_argument("--render-max-fps", type=float, default=25.0,
                   help="bound on the render node's image rate, Hz (0 = unbounded). A renderer slower "
                        "than this renders the newest FLAME frame and drops the stale ones (default: 25)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads of this process (default: the config's runtime.torch_threads, "
                        "0 = auto: 1 on machines with <= 2 cores). The nodes already run in parallel threads; "
                        "intra-op threads on top oversubscribe a small CPU")
    p.add_argument("--gil-switch-interval", type=float, default=None,
                   help="Python's thread switch interval, s (default: the config's runtime.gil_switch_interval, "
                        "0.0005; 0 = Python's 0.005). The CPU rasterizer issues many small torch calls; with "
                        "Python's interval the motion node waits up to 5 ms for the GIL at each and falls behind")
    p.add_argument("--executor", choices=EXECUTORS, default="events",
                   help="events: rclpy's C++ EventsExecutor (one thread, little CPU per callback; falls back to "
                        "multi when this rclpy lacks it, and with --bag, whose raw subscriptions it cannot take); multi: "
                        "rclpy's MultiThreadedExecutor (default: events)")
    p.add_argument("--partner-video", default="",
                   help="a video file played at real time as the partner's camera (partner/camera/image, at the "
                        "video's frame rate) and microphone (its audio on audio/partner, unless --partner-audio "
                        "is given); the face_tracker node turns the face into partner/flame_params")
    p.add_argument("--partner-camera", action="store_true",
                   help="run the face_tracker node on partner/camera/image from a camera driver (remap the "
                        "driver's topic there) -> partner/flame_params")
    p.add_argument("--tracker-fps", type=float, default=10.0,
                   help="largest rate of the face tracker's partner/flame_params, Hz (default 10: in this "
                        "one-process graph on 2 cores a 25-Hz tracker takes the CPU the renderer needs; the "
                        "motion node holds the partner's last frame in between)")
    p.add_argument("--bag", default="",
                   help="also record the session topics to this rosbag2 directory (MCAP; must not exist), "
                        "as `ros2 bag record -s mcap -o PATH` would; read it with `rsatalker evaluate-bag PATH`")
    p.add_argument("--role", choices=ROLES, default="screen",
                   help="screen: the avatar speaks --self-audio or the microphone; robot: the avatar's speech is "
                        "the robot's TTS on --robot-speech-topic and the microphone (or --partner-audio) hears the "
                        "partner (default: screen)")
    p.add_argument("--robot-speech-topic", default=st.ROBOT_SPEECH.name,
                   help=f"--role robot: the robot's TTS audio topic (default: {st.ROBOT_SPEECH.name})")
    p.add_argument("--robot-speech-format", choices=ROBOT_SPEECH_FORMATS, default="chunk",
                   help="--role robot: rsatalker/AudioChunk (chunk), std_msgs/UInt8MultiArray PCM16 (pcm16) or "
                        "audio_common_msgs/AudioData (audio_common; needs that package) (default: chunk)")
    p.add_argument("--robot-speech-rate", type=int, default=16000,
                   help="--role robot: sample rate of PCM16 speech, Hz (default: 16000)")
    return p


def audio_sources(args: argparse.Namespace) -> List[Tuple[str, str, str]]:
    """Which node feeds each speaker's audio topic: ``[(kind, role, what)]`` with ``kind``
    ``"player"`` (a wav file ``what``), ``"capture"`` (the microphone) or ``"adapter"``
    (the robot's speech topic ``what``, through the audio_adapter node); ``role`` ``"self"``
    (the avatar) or ``"partner"``. The partner's video (``--partner-video``) brings its own
    audio unless ``--partner-audio`` is given, so it is not listed.

    Raises:
        ConfigError: ``--input-source file`` without a file for it, or ``--role robot`` with
            ``--self-audio`` (a robot's own speech is its TTS topic).
    """
    from rsatalker_core.errors import ConfigError

    role = getattr(args, "role", "screen")
    if role == "screen":
        source = args.input_source or ("file" if args.self_audio else "mic")
        if source == "file" and not args.self_audio:
            raise ConfigError("--input-source file needs --self-audio")
        out = [("player", "self", args.self_audio) if source == "file" else ("capture", "self", "")]
        return out + ([("player", "partner", args.partner_audio)] if args.partner_audio else [])
    if role != "robot":
        raise ConfigError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if args.self_audio:
        raise ConfigError("--role robot: the avatar's speech is the robot's TTS on --robot-speech-topic; "
                          "--self-audio is for --role screen")
    out = [("adapter", "self", args.robot_speech_topic)]
    if args.partner_audio:
        return out + [("player", "partner", args.partner_audio)]
    if args.input_source == "file" and not getattr(args, "partner_video", ""):
        raise ConfigError("--role robot --input-source file needs --partner-audio (or --partner-video)")
    if getattr(args, "partner_video", ""):
        return out  # the video's sound is the partner's
    return out + [("capture", "partner", "")]


def bring_up(nodes: List[Any]) -> None:
    """Configure every managed node (model loads), then activate every one (docs/ros.md
    "Lifecycle"); other nodes are left as they are.

    Raises:
        RsatalkerError: the error that failed a node's transition.
    """
    from rsatalker_ros.nodes.common import LifecycleError, ManagedNode

    managed = [n for n in nodes if isinstance(n, ManagedNode)]
    for transition in ("configure", "activate"):
        for node in managed:
            if getattr(node, f"trigger_{transition}")().name != "SUCCESS":
                exc = node.lifecycle_error
                if isinstance(exc, RsatalkerError):
                    raise exc
                raise LifecycleError(f"{node.get_name()}: {transition} failed: {exc!r}") from exc


def make_executor(kind: str = "events"):
    """The executor the graph spins on: ``"events"`` (rclpy's C++ ``EventsExecutor``, when
    this rclpy has it, else a 4-thread MultiThreadedExecutor) or ``"multi"``.

    Raises:
        ValueError: another ``kind``.
    """
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {kind!r}")
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            rclpy.logging.get_logger("rsatalker_bringup").warning(
                "rclpy has no EventsExecutor; using the MultiThreadedExecutor")
        else:
            return EventsExecutor()
    return MultiThreadedExecutor(num_threads=4)


def _common(args: argparse.Namespace) -> List[Parameter]:
    out = []
    if args.config:
        out.append(Parameter("config_file", value=args.config))
    if args.device:
        out.append(Parameter("device", value=args.device))
    return out


def _player(role: str, path: str, args: argparse.Namespace):
    from rsatalker_ros.nodes.audio_player import AudioPlayerNode

    return AudioPlayerNode(
        f"audio_player_{role}",
        parameter_overrides=[
            Parameter("file", value=path),
            Parameter("role", value=role),
            Parameter("start_seconds", value=float(args.start)),
            Parameter("duration_seconds", value=float(args.duration)),
            Parameter("rate", value=float(args.rate)),
            Parameter("wait_for_subscribers", value=1),  # the motion node
        ] + ([Parameter("config_file", value=args.config)] if args.config else []),
    )


def check_inputs(args: argparse.Namespace) -> None:
    """Everything the graph would otherwise fail on later, checked before it starts.

    Raises:
        RsatalkerError: (a subclass) missing/unreadable/out-of-range audio, unknown
            relationship or device, unusable config, bad numeric options, an output directory
            or bag path that cannot be written (a bag path must not exist yet).
    """
    from rsatalker_core.device import resolve_device
    from rsatalker_core.errors import ConfigError, OutputError
    from rsatalker_core.io.outputs import check_writable

    audio_sources(args)  # who feeds which speaker (role, files, input source)
    for name in ("duration", "start"):
        v = getattr(args, name)
        if not v >= 0 or v == float("inf"):
            raise ConfigError(f"--{name} must be a finite number >= 0, got {v}")
    if not 0.01 <= args.rate <= 100:
        raise ConfigError(f"--rate must be in 0.01..100, got {args.rate}")
    if not 1.0 <= args.tracker_fps <= 100.0:
        raise ConfigError(f"--tracker-fps must be in 1..100 Hz, got {args.tracker_fps}")
    if not 0 <= args.render_max_fps <= 1000:
        raise ConfigError(f"--render-max-fps must be in 0..1000 Hz, got {args.render_max_fps}")
    if not 4000 <= getattr(args, "robot_speech_rate", 16000) <= 192000:
        raise ConfigError(f"--robot-speech-rate must be in 4000..192000 Hz, got {args.robot_speech_rate}")
    if args.relationship is not None:
        Relationship.parse(args.relationship)
    cfg = load_config(args.config or None, {"device": args.device} if args.device else {})
    resolve_device(cfg.device)
    for path in (args.self_audio, args.partner_audio):
        if path:
            load_audio(path, None)  # missing, not audio, non-finite or out-of-range samples
    if args.output_dir:
        check_writable(args.output_dir, "dir", "--output-dir")
    if args.bag:
        import os

        if os.path.lexists(args.bag):
            raise OutputError(f"--bag {args.bag}: already exists (a new bag directory is created)")
        check_writable(args.bag, "dir", "--bag")


def _video_player(args: argparse.Namespace):
    """``--partner-video``: the video as the partner's camera (and microphone unless
    ``--partner-audio`` is given), starting once the face tracker subscribes.

    Raises:
        ConfigError: a missing or unreadable video.
    """
    from rsatalker_ros.nodes.video_player import VideoPlayerNode

    return VideoPlayerNode(parameter_overrides=[
        Parameter("file", value=args.partner_video),
        Parameter("publish_audio", value=not args.partner_audio),
        Parameter("rate", value=float(args.rate)),
        Parameter("wait_for_subscribers", value=1),  # the face tracker
    ] + ([Parameter("config_file", value=args.config)] if args.config else []))


def _face_tracker(args: argparse.Namespace):
    """The partner's face: partner/camera/image -> partner/flame_params (docs/ros.md "Face tracker")."""
    from rsatalker_ros.nodes.face_tracker import FaceTrackerNode

    return FaceTrackerNode(parameter_overrides=_common(args) + [Parameter("fps", value=float(args.tracker_fps))],
                           autostart=False)  # bring_up() starts it


def _capture(role: str, args: argparse.Namespace):
    """The microphone as ``audio/<role>``."""
    from rsatalker_ros.nodes.audio_capture import AudioCaptureNode

    return AudioCaptureNode(parameter_overrides=[Parameter("role", value=role)]
                            + ([Parameter("config_file", value=args.config)] if args.config else []))


def _adapter(topic: str, args: argparse.Namespace):
    """``--role robot``: the robot's TTS on ``topic`` relayed to ``audio/self``."""
    from rsatalker_ros.nodes.audio_adapter import AudioAdapterNode

    return AudioAdapterNode(parameter_overrides=[
        Parameter("role", value="self"),
        Parameter("input_format", value=args.robot_speech_format),
        Parameter("input_topic", value=topic),
        Parameter("sample_rate", value=int(args.robot_speech_rate)),
    ])


def run(args: argparse.Namespace, ros_args: Optional[List[str]] = None) -> int:
    """Build the graph, run it, write the recordings. Returns the exit status."""
    from rsatalker_ros.nodes.motion_node import MotionNode
    from rsatalker_ros.nodes.recorder import RecorderNode

    # "file": the avatar's speech is a file (the run ends once it has played); else live
    # speech (a microphone, or the robot's TTS with --role robot)
    screen = getattr(args, "role", "screen") == "screen"
    source = "file" if screen and (args.input_source or ("file" if args.self_audio else "mic")) == "file" else "mic"
    try:
        check_inputs(args)
        runtime = load_config(args.config or None).runtime
    except RsatalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.torch_threads is not None:
        runtime.torch_threads = args.torch_threads
    if args.gil_switch_interval is not None:
        runtime.gil_switch_interval = args.gil_switch_interval
    try:
        tune_process(runtime)
    except RsatalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rclpy.init(args=ros_args)
    log = rclpy.logging.get_logger("rsatalker_bringup")
    nodes = []
    kind = getattr(args, "executor", "events")
    if kind == "events" and args.bag:
        # the recorder's bag takes raw (serialized) messages, which rclpy 7.1's EventsExecutor
        # fails on (SystemError in spin_once): record on the Python executor
        kind = "multi"
    executor = make_executor(kind)
    players = []
    recorder = None
    try:
        for kind, role, what in audio_sources(args):  # --role: who speaks on audio/self, audio/partner
            if kind == "player":
                players.append(_player(role, what, args))
            elif kind == "capture":
                nodes.append(_capture(role, args))
            else:
                nodes.append(_adapter(what, args))
        if args.partner_video:  # the run ends once the video has played too
            players.append(_video_player(args))
        if args.partner_video or args.partner_camera:
            nodes.append(_face_tracker(args))
        nodes += players
        motion_params = _common(args)
        if source == "file":
            motion_params.append(Parameter("max_queue_frames", value=FILE_QUEUE_FRAMES))
        if args.relationship is not None:
            motion_params.append(Parameter("relationship", value=args.relationship))
        motion = MotionNode(parameter_overrides=motion_params, autostart=False)
        nodes.append(motion)
        if not args.no_render:
            from rsatalker_ros.nodes.render_node import RenderNode

            nodes.append(RenderNode(parameter_overrides=_common(args)
                                    + [Parameter("max_fps", value=float(args.render_max_fps))], autostart=False))
        recorder = RecorderNode(parameter_overrides=[Parameter("bag_path", value=args.bag)] if args.bag else None)
        nodes.append(recorder)
        bring_up(nodes)  # configure (model loads), then activate the managed nodes
        for node in nodes:
            executor.add_node(node)

        log.info(f"graph up: {', '.join(n.get_name() for n in nodes)}")
        t_start = time.monotonic()
        done_at = idle_since = None
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if source == "file":
                if done_at is None and all(p.finished for p in players):
                    done_at = now
                if done_at is not None:
                    if not motion.idle():
                        idle_since = None
                    elif idle_since is None:
                        idle_since = now
                    if (idle_since is not None and now - idle_since > IDLE_SECONDS) or now - done_at > DRAIN_TIMEOUT:
                        break
            elif args.duration > 0 and now - t_start > args.duration:
                break
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except RsatalkerError as exc:
        log.fatal(f"{type(exc).__name__}: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        # Let callbacks still running in the MultiThreadedExecutor's pool finish first:
        # Executor.shutdown() (rclpy 7.1.6) neither waits for them nor survives them
        # touching its guard condition afterwards.
        try:
            pool = getattr(executor, "_executor", None)
            if pool is not None:
                pool.shutdown(wait=True)
            executor.shutdown()
        except Exception as exc:  # the recordings and the bag must still be finished below
            log.error(f"executor shutdown: {type(exc).__name__}: {exc}")
        if recorder is not None and args.output_dir:
            audio, sr = None, None
            if args.self_audio:
                try:
                    wav, sr = load_audio(args.self_audio)
                    audio = wav[int(round(args.start * sr)):]
                except RsatalkerError:
                    audio, sr = None, None
            try:
                written = recorder.save(args.output_dir, audio=audio, sample_rate=sr)
                summary = recorder.summary()
                log.info(
                    f"{summary['flame_messages']} FLAME frames at {summary['flame_fps']:.1f} fps, "
                    f"{summary['images']} images; wrote {', '.join(written.values())}"
                )
            except (RsatalkerError, OSError) as exc:
                log.error(f"could not write recordings: {exc}")
        for node in nodes:  # the recorder finishes its bag here, whatever ended the run
            try:
                node.destroy_node()
            except Exception as exc:
                log.error(f"destroying {node.get_name()}: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point ``rsatalker_bringup`` (``python -m rsatalker_ros.bringup``)."""
    argv = list(sys.argv if argv is None else [sys.argv[0]] + list(argv))
    args = build_parser().parse_args(remove_ros_args(argv)[1:])
    return run(args, ros_args=argv)


if __name__ == "__main__":
    raise SystemExit(main())
