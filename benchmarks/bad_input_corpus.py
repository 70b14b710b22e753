"""Bad-input corpus (issue 12): what a new user might feed rsatalker, and whether each case
is handled cleanly.

Commands (``rsatalker generate``, ``evaluate``, ``evaluate-bag``, ``train``, ``track``, run
in-process through :func:`rsatalker_core.cli.main`, and ``rsatalker_bringup`` through
:func:`rsatalker_ros.bringup.main`) are clean when they exit with status 2, print exactly
one line holding ``error:`` and no traceback, and leave no output file or temporary behind.
ROS messages and parameters go to one real :class:`~rsatalker_ros.nodes.motion_node.MotionNode`
(small config) through its subscription callbacks and ``set_parameters``: clean when the
message is logged and dropped (``messages_rejected`` grows) or the parameter refused, and
the node still publishes FLAME frames afterwards.

Run ``python benchmarks/bad_input_corpus.py`` to write ``benchmarks/results_bad_input.md``;
``test/test_bad_input_corpus.py`` runs the same cases.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SMALL = str(REPO / "config" / "test_small.yaml")
SR = 16000


@dataclass
class Case:
    """One bad input: ``command`` (generate, evaluate, ..., ros-message, ros-parameter),
    ``name``, and either ``argv`` (a command line) or ``send`` (a node input)."""

    command: str
    name: str
    argv: List[str] = field(default_factory=list)
    send: Optional[Callable] = None
    must_not_exist: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- inputs


def _wav(path: Path, data: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> str:
    import soundfile as sf

    sf.write(str(path), data, sr, subtype=subtype)
    return str(path)


def _npz(path: Path, exp: np.ndarray, pose: np.ndarray) -> str:
    np.savez(str(path), exp=exp, pose=pose)
    return str(path)


def read_only_dir(root: Path) -> Optional[str]:
    """A directory this process cannot write in: a chmod-555 one, or (as root, who ignores
    permissions) a directory on a read-only file system; ``None`` when there is none."""
    from rsatalker_core.io.outputs import _probe_dir

    d = root / "readonly"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o555)
    if _probe_dir(str(d)) is not None:
        return str(d)
    for cand in ("/sys", "/proc/sys"):
        if os.path.isdir(cand) and _probe_dir(cand) is not None:
            return cand
    return None


def make_inputs(root: Path) -> Dict[str, str]:
    """Good and bad input files under ``root``."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    speech = (0.2 * rng.standard_normal(SR) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    p: Dict[str, str] = {"root": str(root)}
    p["good_wav"] = _wav(root / "good.wav", speech)
    p["text"] = str(root / "notes.txt")
    Path(p["text"]).write_text("this is not audio\n")
    p["empty_wav"] = _wav(root / "empty.wav", np.zeros(0, np.float32))
    p["nan_wav"] = _wav(root / "nan.wav", np.where(t < 0.5, speech, np.nan).astype(np.float32))
    p["inf_wav"] = _wav(root / "inf.wav", np.where(t < 0.5, speech, np.inf).astype(np.float32))
    p["huge_wav"] = _wav(root / "huge.wav", speech * np.float32(1e20))
    p["loud_wav"] = _wav(root / "loud.wav", speech * np.float32(1e4))
    p["tiny_wav"] = _wav(root / "tiny.wav", speech[:10])
    p["rate1000_wav"] = str(root / "rate1000.wav")
    # libsndfile refuses to write 1 kHz? write 8 kHz then patch the header's rate fields.
    _wav(root / "rate1000.wav", speech[:8000], 8000, "PCM_16")
    with open(p["rate1000_wav"], "r+b") as fh:
        fh.seek(24)
        fh.write(struct.pack("<II", 1000, 2000))
    pcm = _wav(root / "full_pcm.wav", speech, SR, "PCM_16")
    raw = Path(pcm).read_bytes()
    p["truncated_wav"] = str(root / "truncated.wav")
    Path(p["truncated_wav"]).write_bytes(raw[: len(raw) // 2])
    p["dir"] = str(root / "a_directory")
    os.makedirs(p["dir"], exist_ok=True)
    p["file"] = str(root / "a_file")
    Path(p["file"]).write_text("x")
    T = 25
    exp, pose = np.zeros((T, 50), np.float32), np.zeros((T, 6), np.float32)
    p["npz_good"] = _npz(root / "good.npz", exp, pose)
    p["npz_garbage"] = str(root / "garbage.npz")
    Path(p["npz_garbage"]).write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(str(root / "nokeys.npz"), shape=np.zeros((3, 100)))
    p["npz_nokeys"] = str(root / "nokeys.npz")
    p["npz_exp_shape"] = _npz(root / "exp_shape.npz", np.zeros((T, 10), np.float32), pose)
    p["npz_pose_shape"] = _npz(root / "pose_shape.npz", exp, np.zeros((T, 5), np.float32))
    p["npz_lengths"] = _npz(root / "lengths.npz", exp, pose[:10])
    p["npz_nan"] = _npz(root / "nan.npz", np.full((T, 50), np.nan, np.float32), pose)
    p["npz_1e30"] = _npz(root / "scaled.npz", np.full((T, 50), 1e30, np.float32), np.full((T, 6), 1e30, np.float32))
    p["npz_degrees"] = _npz(root / "degrees.npz", exp, np.full((T, 6), 45.0, np.float32))
    p["npz_exp_1e3"] = _npz(root / "exp1e3.npz", np.full((T, 50), 1e3, np.float32), pose)
    p["npz_empty"] = _npz(root / "empty.npz", np.zeros((0, 50), np.float32), np.zeros((0, 6), np.float32))
    p["yaml_garbage"] = str(root / "garbage.yaml")
    Path(p["yaml_garbage"]).write_text("motion: [unclosed\n  : :\n")
    p["yaml_badvalue"] = str(root / "badvalue.yaml")
    Path(p["yaml_badvalue"]).write_text("render:\n  width: -5\n")
    p["bag_random"] = str(root / "random.mcap")
    Path(p["bag_random"]).write_bytes(rng.bytes(2048))
    p["empty_dir"] = str(root / "empty_dir")
    os.makedirs(p["empty_dir"], exist_ok=True)
    p["ckpt_garbage"] = str(root / "garbage.pt")
    Path(p["ckpt_garbage"]).write_bytes(b"not a checkpoint")
    p["readonly"] = read_only_dir(root)
    return p


# ----------------------------------------------------------------------------- cases


def command_cases(p: Dict[str, str]) -> List[Case]:
    out = os.path.join(p["root"], "out")
    under_file = os.path.join(p["file"], "x")
    ro = p["readonly"]
    cases: List[Case] = []

    # ---- generate
    g_npz = os.path.join(out, "gen.npz")
    g_mp4 = os.path.join(out, "gen.mp4")
    base = {"--self-audio": p["good_wav"], "--partner-audio": p["good_wav"], "--relationship": "couple",
            "--out-motion": g_npz, "--config": SMALL}

    def gen(name, flags=None, extra=(), video=False, drop=()):
        d = dict(base, **(flags or {}))
        argv = ["generate"] + [x for k, v in d.items() if k not in drop for x in (k, v)]
        argv += (["--out-video", g_mp4] if video else ["--no-video"]) + list(extra)
        cases.append(Case("generate", name, argv, must_not_exist=[g_npz, g_mp4]))

    for key in ("--self-audio", "--partner-audio"):
        who = key[2:-6]
        gen(f"{who} audio missing", {key: os.path.join(p["root"], "missing.wav")})
        gen(f"{who} audio is a text file", {key: p["text"]})
        gen(f"{who} audio is a directory", {key: p["dir"]})
        gen(f"{who} audio holds NaN", {key: p["nan_wav"]})
        gen(f"{who} audio scaled to 1e20", {key: p["huge_wav"]})
    gen("self audio holds Inf", {"--self-audio": p["inf_wav"]})
    gen("self audio at 1e4 x full scale", {"--self-audio": p["loud_wav"]})
    gen("self audio empty", {"--self-audio": p["empty_wav"]})
    gen("self audio shorter than a frame", {"--self-audio": p["tiny_wav"]})
    gen("self audio truncated", {"--self-audio": p["truncated_wav"]})
    gen("self audio at 1000 Hz", {"--self-audio": p["rate1000_wav"]})
    gen("unknown relationship", {"--relationship": "frenemies"})
    gen("empty relationship", {"--relationship": ""})
    for k in ("garbage", "nokeys", "exp_shape", "pose_shape", "lengths", "nan", "1e30", "degrees", "exp_1e3", "empty"):
        gen(f"partner npz: {k}", {"--partner-motion": p[f"npz_{k}"]})
    gen("partner npz missing", {"--partner-motion": os.path.join(p["root"], "missing.npz")})
    gen("--out-motion is a directory", {"--out-motion": p["dir"]})
    gen("--out-motion under a file", {"--out-motion": os.path.join(under_file, "m.npz")})
    cases.append(Case("generate", "--out-video is a directory",
                      ["generate", "--self-audio", p["good_wav"], "--partner-audio", p["good_wav"],
                       "--relationship", "couple", "--out-motion", g_npz, "--out-video", p["dir"], "--config", SMALL],
                      must_not_exist=[g_npz]))
    cases.append(Case("generate", "--out-video under a file",
                      ["generate", "--self-audio", p["good_wav"], "--partner-audio", p["good_wav"],
                       "--relationship", "couple", "--out-motion", g_npz, "--out-video",
                       os.path.join(under_file, "v.mp4"), "--config", SMALL], must_not_exist=[g_npz]))
    cases.append(Case("generate", "--out-video same as --out-motion",
                      ["generate", "--self-audio", p["good_wav"], "--partner-audio", p["good_wav"],
                       "--relationship", "couple", "--out-motion", g_npz, "--out-video", g_npz, "--config", SMALL],
                      must_not_exist=[g_npz]))
    if ro:
        gen("--out-motion in a read-only directory", {"--out-motion": os.path.join(ro, "rsatalker_m.npz")})
    for dev in ("mps", "xpu", "meta", "cuda:7", "gpu", "cpu:x"):
        gen(f"device {dev}", extra=["--device", dev])
    gen("config missing", {"--config": os.path.join(p["root"], "missing.yaml")})
    gen("config not YAML", {"--config": p["yaml_garbage"]})
    gen("config value out of range", {"--config": p["yaml_badvalue"]})
    gen("config is a directory", {"--config": p["dir"]})
    gen("missing --relationship", drop=("--relationship",))
    cases.append(Case("generate", "both --out-video and --no-video",
                      ["generate", "--self-audio", p["good_wav"], "--partner-audio", p["good_wav"],
                       "--relationship", "couple", "--out-motion", g_npz, "--out-video", g_mp4, "--no-video"],
                      must_not_exist=[g_npz, g_mp4]))

    # ---- evaluate
    e_out = os.path.join(out, "eval")

    def ev(name, extra=(), data=None, out_dir=e_out):
        argv = ["evaluate", "--data", data or p["empty_dir"], "--split", "test", "--config", SMALL]
        if out_dir is not None:
            argv += ["--out", out_dir]
        cases.append(Case("evaluate", name, argv + list(extra), must_not_exist=[e_out]))

    ev("data directory missing", data=os.path.join(p["root"], "nodata"))
    ev("data is a file", data=p["file"])
    ev("data has no split")
    ev("unknown split", ["--split", "validation"])
    ev("checkpoint missing", ["--checkpoint", os.path.join(p["root"], "missing.pt")])
    ev("--out is a file", out_dir=p["file"])
    ev("--out under a file", out_dir=os.path.join(under_file, "eval"))
    if ro:
        ev("--out in a read-only directory", out_dir=os.path.join(ro, "rsatalker_eval"))
    for dev in ("mps", "meta", "cuda:3"):
        ev(f"device {dev}", ["--device", dev])
    ev("--side-by-side -1", ["--side-by-side", "-1"])
    ev("--max-clips not a number", ["--max-clips", "many"])
    ev("config not YAML", ["--config", p["yaml_garbage"]])

    # ---- evaluate-bag
    b_out = os.path.join(out, "bagreport")

    def eb(name, bag, extra=()):
        cases.append(Case("evaluate-bag", name, ["evaluate-bag", bag] + list(extra), must_not_exist=[b_out]))

    eb("bag missing", os.path.join(p["root"], "missing.mcap"))
    eb("bag is a text file", p["text"])
    eb("bag is an empty directory", p["empty_dir"])
    eb("bag is random bytes", p["bag_random"])
    eb("--gt-npz missing", p["bag_random"], ["--gt-npz", os.path.join(p["root"], "missing.npz")])
    eb("--gt-npz garbage", p["bag_random"], ["--gt-npz", p["npz_garbage"]])
    eb("--gt-npz scaled to 1e30", p["bag_random"], ["--gt-npz", p["npz_1e30"]])
    eb("--partner-gt-npz in degrees", p["bag_random"], ["--partner-gt-npz", p["npz_degrees"]])
    eb("--out is a file", p["bag_random"], ["--out", p["file"]])
    eb("--out under a file", p["bag_random"], ["--out", os.path.join(under_file, "r")])
    eb("--video is a directory", p["bag_random"], ["--video", p["dir"]])
    eb("--video under a file", p["bag_random"], ["--video", os.path.join(under_file, "v.mp4")])
    if ro:
        eb("--out in a read-only directory", p["bag_random"], ["--out", os.path.join(ro, "rsatalker_r")])
    eb("--rerender on device meta", p["bag_random"], ["--rerender", "--device", "meta", "--video", os.path.join(out, "v.mp4")])

    # ---- train
    t_out = os.path.join(out, "train")

    def tr(name, sets=(), extra=(), stage="1"):
        argv = ["train", "--stage", stage, "--config", SMALL, "--set", f"train.out_dir={t_out}",
                "--set", f"data.root={os.path.join(p['root'], 'nodata')}"]
        for s in sets:
            argv += ["--set", s]
        cases.append(Case("train", name, argv + list(extra), must_not_exist=[os.path.join(t_out, "checkpoints")]))

    tr("data root missing")
    tr("data root is an empty directory", [f"data.root={p['empty_dir']}"])
    tr("out_dir is a file", [f"train.out_dir={p['file']}"])
    tr("out_dir under a file", [f"train.out_dir={under_file}"])
    if ro:
        tr("out_dir in a read-only directory", [f"train.out_dir={os.path.join(ro, 'rsatalker_run')}"])
    for dev in ("mps", "meta", "cuda:5", "tpu"):
        tr(f"device {dev}", extra=["--device", dev])
    tr("--set without '='", ["train.lr"])
    tr("--set value not YAML", ["train.lr=[1, 2"])
    tr("--set unknown key", ["train.no_such_key=1"])
    tr("--set wrong type", ["train.max_steps=many"])
    tr("--resume a missing checkpoint, no data", extra=["--resume", os.path.join(p["root"], "missing.pt")])
    tr("stage 4", stage="4")

    # ---- track
    tk_out = os.path.join(out, "track.npz")

    def tk(name, video, extra=()):
        cases.append(Case("track", name, ["track", video, "--out", tk_out] + list(extra), must_not_exist=[tk_out]))

    tk("video missing", os.path.join(p["root"], "missing.mp4"))
    tk("video is a text file", p["text"])
    tk("--hfov 0", p["text"], ["--hfov", "0"])
    cases.append(Case("track", "--out is a directory", ["track", p["text"], "--out", p["dir"]]))
    cases.append(Case("track", "--out under a file", ["track", p["text"], "--out", os.path.join(under_file, "t.npz")]))
    tk("--overlay is a directory", p["text"], ["--overlay", p["dir"]])
    tk("--out-wav under a file", p["text"], ["--out-wav", os.path.join(under_file, "t.wav")])
    return cases


def bringup_cases(p: Dict[str, str]) -> List[Case]:
    out = os.path.join(p["root"], "bringup_out")
    under_file = os.path.join(p["file"], "x")
    ro = p["readonly"]
    cases = []

    def bu(name, extra=(), self_audio=p["good_wav"]):
        argv = (["--self-audio", self_audio] if self_audio else []) + ["--config", SMALL, "--no-render",
                                                                        "--output-dir", out]
        cases.append(Case("bringup", name, argv + list(extra), must_not_exist=[out]))

    bu("file input without --self-audio", ["--input-source", "file"], self_audio="")
    bu("self audio missing", self_audio=os.path.join(p["root"], "missing.wav"))
    bu("self audio is a text file", self_audio=p["text"])
    bu("self audio scaled to 1e20", self_audio=p["huge_wav"])
    bu("self audio holds NaN", self_audio=p["nan_wav"])
    bu("partner audio truncated", ["--partner-audio", p["truncated_wav"]])
    bu("unknown relationship", ["--relationship", "frenemies"])
    for dev in ("meta", "mps", "cuda:2"):
        bu(f"device {dev}", ["--device", dev])
    bu("config missing", ["--config", os.path.join(p["root"], "missing.yaml")])
    bu("--output-dir is a file", ["--output-dir", p["file"]])
    bu("--output-dir under a file", ["--output-dir", under_file])
    bu("--bag already exists", ["--bag", p["dir"]])
    bu("--bag under a file", ["--bag", os.path.join(under_file, "bag")])
    if ro:
        bu("--output-dir in a read-only directory", ["--output-dir", os.path.join(ro, "rsatalker_out")])
        bu("--bag in a read-only directory", ["--bag", os.path.join(ro, "rsatalker_bag")])
    bu("--duration -1", ["--duration", "-1"])
    bu("--duration nan", ["--duration", "nan"])
    bu("--rate 0", ["--rate", "0"])
    bu("--start -2", ["--start", "-2"])
    bu("--render-max-fps -5", ["--render-max-fps", "-5"])
    return cases


# ----------------------------------------------------------------------------- running


def run_command(case: Case) -> Tuple[bool, str]:
    """Run a command case in this process; ``(clean, why)``."""
    err, outbuf = io.StringIO(), io.StringIO()
    import logging

    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outbuf):
            handler = logging.StreamHandler(err)
            root.addHandler(handler)
            try:
                if case.command == "bringup":
                    from rsatalker_ros.bringup import main as bringup_main

                    code = bringup_main(case.argv)
                else:
                    from rsatalker_core.cli import main

                    code = main(case.argv)
            except SystemExit as exc:  # argparse
                code = exc.code
            except BaseException as exc:  # noqa: BLE001 - a crash is what the corpus looks for
                import traceback

                traceback.print_exc(file=err)
                code = f"raised {type(exc).__name__}"
    finally:
        root.handlers[:] = saved
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if "error:" in ln]
    problems = []
    if code != 2:
        problems.append(f"exit {code}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} 'error:' lines")
    if "Traceback" in text:
        problems.append("traceback")
    left = [q for q in case.must_not_exist if os.path.exists(q)]
    if left:
        problems.append(f"left {left}")
    why = "; ".join(problems) if problems else (lines[0].strip() if lines else "")
    if problems:
        why += " | " + text.strip()[-400:]
    return not problems, why


def leftover_temporaries(root: str) -> List[str]:
    """Temporary files (``*.part*``, ``*.tmp*``) anywhere under ``root``."""
    found = []
    for d, _, files in os.walk(root):
        found += [os.path.join(d, f) for f in files if ".part" in f or ".tmp" in f]
    return found


# ---- ROS messages and parameters (one real motion node)


def _audio_msg(samples, sr, role="self"):
    from rsatalker.msg import AudioChunk
    from rsatalker_ros.conversions import make_header

    msg = AudioChunk()
    msg.header = make_header(time.time_ns(), "corpus")
    msg.role, msg.sample_rate = role, int(sr)
    msg.samples = np.asarray(samples, np.float32).tolist()
    return msg


def _flame_msg(**fields):
    from rsatalker_ros.conversions import array_to_flame_params

    msg = array_to_flame_params(np.zeros(56, np.float32), stamp_ns=time.time_ns())
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def message_cases() -> List[Case]:
    """Bad messages, each ``send(node)`` through the motion node's subscription callback."""
    ok = 0.1 * np.sin(np.arange(640) / 5.0)
    cases: List[Case] = []

    def audio(name, samples, sr=SR, role="self"):
        cases.append(Case("ros-message", f"{role} AudioChunk: {name}",
                          send=lambda n, s=samples, r=sr, ro=role: n._on_audio(_audio_msg(s, r, ro), ro)))

    for role in ("self", "partner"):
        audio("NaN samples", np.full(640, np.nan), role=role)
        audio("1e20 samples", np.full(640, 1e20), role=role)
        audio("no samples", np.zeros(0), role=role)
        audio("sample rate 0", ok, 0, role)
    audio("Inf samples", np.full(640, np.inf))
    audio("2e3 samples", ok * 2e4)
    audio("sample rate 1000 Hz", ok, 1000)
    audio("sample rate 10^9 Hz", ok, 10**9)
    audio("negative sample rate", ok, -16000)
    audio("20 s in one chunk", np.zeros(20 * SR))

    def flame(name, **fields):
        cases.append(Case("ros-message", f"partner FlameParams: {name}",
                          send=lambda n, f=fields: n._on_partner_flame(_flame_msg(**f))))

    flame("49 expression values", expression=[0.0] * 49)
    flame("NaN expression", expression=[float("nan")] * 50)
    flame("expression 1e30", expression=[1e30] * 50)
    flame("expression 1e3", expression=[1e3] * 50)
    flame("head pose 10 rad", head_pose=np.full(3, 10.0, np.float32))
    flame("head pose in degrees (90)", head_pose=np.array([90.0, 0, 0], np.float32))
    flame("jaw pose -4 rad", jaw_pose=np.array([-4.0, 0, 0], np.float32))
    flame("Inf jaw pose", jaw_pose=np.array([np.inf, 0, 0], np.float32))
    flame("head pose 1e30", head_pose=np.full(3, 1e30, np.float32))

    def rel(label, **fields):
        def send(n, f=fields):
            from rsatalker.msg import Relationship as RelationshipMsg

            msg = RelationshipMsg()
            for k, v in f.items():
                setattr(msg, k, v)
            n._on_relationship(msg)
        cases.append(Case("ros-message", f"Relationship: {label}", send=send))

    rel("unknown name", name="frenemies")
    rel("name with spaces", name="   not a relationship   ")
    rel("axis form garbage", name="blood|sideways")
    return cases


def parameter_cases() -> List[Case]:
    """Bad parameter values; ``send(node)`` returns the SetParametersResult."""
    from rclpy.parameter import Parameter

    cases = []

    def par(name, pname, value):
        cases.append(Case("ros-parameter", name, send=lambda n: n.set_parameters([Parameter(pname, value=value)])[0]))

    par("relationship 'frenemies'", "relationship", "frenemies")
    par("relationship ''", "relationship", "")
    par("relationship as an integer", "relationship", 5)
    par("max_queue_frames 0", "max_queue_frames", 0)
    par("max_queue_frames 10^6", "max_queue_frames", 10**6)
    par("max_queue_frames as a string", "max_queue_frames", "many")
    par("device meta", "device", "meta")
    par("streaming.window_frames 0", "streaming.window_frames", 0)
    return cases


def run_node_cases(cases: List[Case], domain_id: int = 0) -> Dict[str, Tuple[bool, str]]:
    """Send each message/parameter case to one real MotionNode; then check it still
    publishes FLAME frames. Returns ``{case name: (clean, why)}``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from rsatalker_ros.nodes.motion_node import MotionNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = MotionNode(context=ctx, parameter_overrides=[Parameter("config_file", value=SMALL)])
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    results: Dict[str, Tuple[bool, str]] = {}
    try:
        for case in cases:
            before = node.messages_rejected
            try:
                res = case.send(node)
            except BaseException as exc:  # noqa: BLE001
                results[case.name] = (False, f"raised {type(exc).__name__}: {exc}")
                continue
            if case.command == "ros-parameter":
                results[case.name] = (not res.successful, res.reason or "accepted")
            else:
                results[case.name] = (node.messages_rejected == before + 1,
                                      f"rejected {node.messages_rejected - before}")
        # Still alive and producing: 2 s of good speech -> FLAME frames published.
        published = node.frames_published
        rng = np.random.default_rng(1)
        t_end = time.monotonic() + 30.0
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() < t_end and node.frames_published - published < 10:
            while sent < 50 and t0 + sent / 25 <= time.monotonic():
                node._on_audio(_audio_msg(0.1 * rng.standard_normal(640), SR, "self"), "self")
                sent += 1
            executor.spin_once(timeout_sec=0.01)
        alive = node.frames_published - published >= 10 and node._worker.is_alive()
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    if not alive:
        results = {k: (False, v[1] + "; node stopped publishing") for k, v in results.items()}
    return results


def run_all(root: Path) -> Dict[str, List[Tuple[Case, bool, str]]]:
    """Every case; ``{command: [(case, clean, why), ...]}``."""
    p = make_inputs(root)
    by_cmd: Dict[str, List[Tuple[Case, bool, str]]] = {}
    for case in command_cases(p) + bringup_cases(p):
        clean, why = run_command(case)
        by_cmd.setdefault(case.command, []).append((case, clean, why))
    left = leftover_temporaries(str(root))
    if left:
        by_cmd.setdefault("temporaries", []).append((Case("temporaries", "no leftover temporaries"), False, str(left)))
    node_cases = message_cases() + parameter_cases()
    res = run_node_cases(node_cases)
    for case in node_cases:
        clean, why = res[case.name]
        by_cmd.setdefault(case.command, []).append((case, clean, why))
    return by_cmd


def resampling_cost() -> List[str]:
    """Time to resample one 40-ms chunk at odd rates (the motion node's per-chunk work)."""
    from scipy.signal import resample_poly

    from rsatalker_core.speech.audio import resample

    rows = ["## Resampling one 40-ms chunk to 16 kHz (ms, median of 20)", "",
            "| input rate | rsatalker resample (libsoxr) | scipy resample_poly (before) |", "|---:|---:|---:|"]
    for sr in (44100, 44099, 47999, 8000):
        x = np.random.default_rng(0).standard_normal(sr // 25).astype(np.float32) * 0.1
        t_new, t_old = [], []
        for _ in range(20):
            t = time.perf_counter(); resample(x, sr, SR); t_new.append(time.perf_counter() - t)
        from math import gcd
        g = gcd(sr, SR)
        for _ in range(3):
            t = time.perf_counter(); resample_poly(x, SR // g, sr // g); t_old.append(time.perf_counter() - t)
        rows.append(f"| {sr} Hz | {1e3 * np.median(t_new):.2f} | {1e3 * np.median(t_old):.1f} |")
    return rows


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="rsatalker_corpus_"))
    t0 = time.perf_counter()
    try:
        by_cmd = run_all(tmp)
    finally:
        ro = tmp / "readonly"
        if ro.exists():
            os.chmod(ro, 0o755)
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t0
    total = sum(len(v) for v in by_cmd.values())
    clean = sum(c for v in by_cmd.values() for _, c, _ in v)
    lines = [
        "# Bad-input corpus (issue 12)",
        "",
        "Generated by `python benchmarks/bad_input_corpus.py` (the cases of test/test_bad_input_corpus.py).",
        "Clean: a command exits 2 with exactly one `error:` line, no traceback and no output or",
        "temporary left behind; a ROS message is logged and dropped and a bad parameter refused,",
        "with the motion node still publishing FLAME frames afterwards.",
        "",
        "| command | cases tried | handled cleanly |",
        "|---|---:|---:|",
    ]
    for cmd, rows in by_cmd.items():
        lines.append(f"| {cmd} | {len(rows)} | {sum(c for _, c, _ in rows)} |")
    lines += [f"| **all** | **{total}** | **{clean}** |", "",
              f"{seconds:.0f} s on this machine (2 shared CPU cores), config/test_small.yaml.", ""]
    lines += resampling_cost() + [""]
    bad = [(cmd, c.name, why) for cmd, rows in by_cmd.items() for c, ok, why in rows if not ok]
    if bad:
        lines += ["## Not handled cleanly", ""] + [f"- {cmd}: {n}: {w}" for cmd, n, w in bad] + [""]
    lines += ["## Cases", ""]
    for cmd, rows in by_cmd.items():
        lines.append(f"- **{cmd}**: " + "; ".join(c.name for c, _, _ in rows))
    out = REPO / "benchmarks" / "results_bad_input.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8 + len(by_cmd) + 2]))
    return 0 if clean == total else 1


if __name__ == "__main__":
    sys.exit(main())
