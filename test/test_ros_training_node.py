"""The training node as a real process: stage 1 on the real DualTalk sample
(config/train_stage1_test.yaml, a few steps), driven and watched over ROS.

One node process goes through, in order:
* a start-up run to train.max_steps: ``running`` reports with increasing steps and finite
  losses, then ``finished`` with an existing checkpoint and final weights;
* ``stage`` set to 4 is refused with a logged reason; the node stays up and serves; a stage-3
  run on data without video is reported ``failed`` with the reason;
* a long run cancelled through ``~/cancel`` mid-run: ``cancelled`` with a checkpoint at the
  step it stopped at; ``resume:=auto`` + ``~/start`` continues from the next step;
* a second node started with ``stage:=4`` logs why it does not train and stays up;
* a run interrupted by SIGINT (node shutdown): the process exits 0 and the checkpoint of
  the step it stopped at is on disk.
"""

import math

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
pytest.importorskip("std_srvs.srv", reason="std_srvs not installed (requirements.txt)")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from rsatalker.msg import TrainingProgress  # noqa: E402
from rsatalker_core.io.checkpoint import load_checkpoint  # noqa: E402
from rsatalker_core.config import DataConfig, TrainConfig  # noqa: E402
from rsatalker_core.training.trainer import TRAIN_CKPT_FORMAT  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import ConversionError, training_progress_to_dict, training_progress_to_msg  # noqa: E402
from rsatalker_ros.nodes import training_node  # noqa: E402
from rsatalker_ros.params import field_names  # noqa: E402
from rsatalker_ros.testing import REPO, NodeProcess, RosHarness, free_domain_id, ros_env  # noqa: E402

PRESET = REPO / "config" / "train_stage1_test.yaml"
NODE = "/training_node"


def test_every_train_and_data_field_is_a_parameter():
    names = set(training_node.parameter_names())
    for section, cls in (("train", TrainConfig), ("data", DataConfig)):
        assert {f"{section}.{f}" for f in field_names(cls)} <= names
    assert {"config_file", "stage", "resume", "device", "seed"} <= names
    assert training_node.stage_error(4) and training_node.stage_error(True) and training_node.stage_error(2) is None


def test_progress_conversion_round_trip_and_errors():
    msg = training_progress_to_msg(3, 5, 10, "running", loss=0.25, eta_s=1.5, stamp_ns=2_000_000_001)
    d = training_progress_to_dict(msg)
    assert d["stage"] == 3 and d["step"] == 5 and d["max_steps"] == 10 and d["state"] == "running"
    assert d["loss"] == 0.25 and d["eta_s"] == 1.5 and d["stamp_ns"] == 2_000_000_001
    assert math.isnan(training_progress_to_dict(training_progress_to_msg(1, 0, 3, "idle"))["loss"])
    for kwargs, field in ((dict(state="paused"), "state"), (dict(step=-1), "step"), (dict(loss=math.inf), "loss"),
                          (dict(eta_s=-2.0), "eta_s")):
        args = {**dict(stage=1, step=1, max_steps=3, state="running"), **kwargs}
        with pytest.raises(ConversionError, match=field):
            training_progress_to_msg(**args)


class _Client:
    """Progress subscription, services and parameter client of the node under test."""

    def __init__(self, h: RosHarness, node: NodeProcess):
        self.h, self.node = h, node
        self.reports = []
        h.node.create_subscription(
            TrainingProgress, topics.TRAINING_PROGRESS,
            lambda m: self.reports.append(training_progress_to_dict(m)), topics.TRAINING_PROGRESS_QOS,
        )
        self.start = h.node.create_client(Trigger, f"{NODE}/start")
        self.cancel = h.node.create_client(Trigger, f"{NODE}/cancel")
        self.params = AsyncParameterClient(h.node, NODE)

    def call(self, client, timeout=30.0):
        assert client.wait_for_service(timeout_sec=timeout)
        fut = client.call_async(Trigger.Request())
        assert self.h.spin_until(fut.done, timeout)
        return fut.result()

    def set(self, timeout=30.0, **values):
        params = [Parameter(k.replace("__", "."), value=v) for k, v in values.items()]
        assert self.params.wait_for_services(timeout_sec=timeout)
        fut = self.params.set_parameters(params)
        assert self.h.spin_until(fut.done, timeout)
        return fut.result().results

    def wait_state(self, states, timeout, since=0):
        ok = self.h.spin_until(
            lambda: any(r["state"] in states for r in self.reports[since:]) or not self.node.alive(), timeout, step=0.05)
        return next((r for r in self.reports[since:] if r["state"] in states), None) if ok else None


def _ckpt_step(path):
    return int(load_checkpoint(str(path), TRAIN_CKPT_FORMAT, "cpu", required_keys=("step",))["step"])


def test_training_node_runs_cancels_resumes_and_refuses_bad_stage(dualtalk_sample, tmp_path):
    domain = free_domain_id()
    env = ros_env(domain)
    run1, run2, run3 = tmp_path / "run1", tmp_path / "run2", tmp_path / "run3"
    node = NodeProcess(
        "rsatalker_ros.nodes.training_node",
        ["-p", f"config_file:={PRESET}", "-p", "stage:=1", "-p", f"data.root:={dualtalk_sample['speaker2_npz'].parent}",
         "-p", f"train.out_dir:={run1}", "-p", "train.max_steps:=4", "-p", "train.val_every:=0",
         "-p", "train.checkpoint_every:=0", "-p", "progress_period:=0.0"],
        env, tmp_path / "node.log",
    )
    # a second node, started with stage 4: refuses to train, says why, stays up
    bad = NodeProcess(
        "rsatalker_ros.nodes.training_node",
        ["-r", "__ns:=/bad", "-p", f"config_file:={PRESET}", "-p", "stage:=4"], env, tmp_path / "bad.log",
    )
    try:
        with RosHarness(domain) as h:
            c = _Client(h, node)
            # 1. the start-up run to max_steps
            fin = c.wait_state({"finished", "failed"}, 240.0)
            assert fin is not None and fin["state"] == "finished", node.log()[-3000:]
            steps = [r for r in c.reports if r["state"] == "running" and r["step"] > 0]
            assert [r["step"] for r in steps] == [1, 2, 3, 4], c.reports
            assert all(math.isfinite(r["loss"]) and r["max_steps"] == 4 and r["stage"] == 1 for r in steps)
            assert all(math.isfinite(r["eta_s"]) and r["eta_s"] >= 0 for r in steps[1:])
            assert steps[-1]["eta_s"] == 0.0
            assert fin["step"] == 4 and fin["checkpoint"] == str(run1 / "checkpoints" / "last.pt")
            assert _ckpt_step(fin["checkpoint"]) == 4
            assert fin["final_weights"] == str(run1 / "motion_stage1.pt") and (run1 / "motion_stage1.pt").is_file()

            # 2. an invalid stage is refused, logged, and the node keeps serving
            res = c.set(stage=4)
            assert not res[0].successful and "stage must be one of" in res[0].reason
            assert h.spin_until(lambda: "refused stage=4" in node.log(), 10.0), node.log()[-2000:]
            assert node.alive()
            busy = c.call(c.cancel)
            assert not busy.success and "no run" in busy.message
            # a run that cannot start (stage 3 needs video, the sample has none) is reported failed
            assert all(r.successful for r in c.set(stage=3, train__out_dir=str(tmp_path / "run_s3")))
            n = len(c.reports)
            assert c.call(c.start).success
            failed = c.wait_state({"failed", "finished", "cancelled"}, 120.0, since=n)
            assert failed is not None and failed["state"] == "failed" and failed["stage"] == 3, node.log()[-3000:]
            assert "video" in failed["message"] and "DatasetError" in failed["message"]
            assert node.alive() and all(r.successful for r in c.set(stage=1))

            # 3. cancel mid-run; the checkpoint resumes at the next step
            assert all(r.successful for r in c.set(train__out_dir=str(run2), train__max_steps=100000))
            n0 = len(c.reports)
            assert c.call(c.start).success
            assert not c.call(c.start).success  # one run at a time
            assert h.spin_until(lambda: any(r["step"] >= 2 for r in c.reports[n0:]), 120.0), node.log()[-3000:]
            assert c.call(c.cancel).success
            can = c.wait_state({"cancelled", "finished", "failed"}, 60.0, since=n0)
            assert can is not None and can["state"] == "cancelled", node.log()[-3000:]
            k = can["step"]
            assert 2 <= k < 100000 and _ckpt_step(can["checkpoint"]) == k
            assert not (run2 / "motion_stage1.pt").exists()

            assert all(r.successful for r in c.set(resume="auto", train__max_steps=k + 2))
            n1 = len(c.reports)
            assert c.call(c.start).success
            fin2 = c.wait_state({"finished", "failed", "cancelled"}, 120.0, since=n1)
            assert fin2 is not None and fin2["state"] == "finished", node.log()[-3000:]
            resumed = [r["step"] for r in c.reports[n1:] if r["state"] == "running" and r["step"] > 0]
            assert resumed == [k + 1, k + 2]
            assert _ckpt_step(fin2["checkpoint"]) == k + 2

            # 4. SIGINT during a run: the checkpoint of the step it stopped at is saved
            assert all(r.successful for r in c.set(resume="", train__out_dir=str(run3), train__max_steps=100000))
            n2 = len(c.reports)
            assert c.call(c.start).success
            assert h.spin_until(lambda: any(r["step"] >= 1 for r in c.reports[n2:]), 120.0), node.log()[-3000:]
            assert bad.alive(), bad.log()
    finally:
        code = node.stop(timeout=60.0)
        bad_code = bad.stop()
    blog = bad.log()
    assert bad_code == 0 and "training not started: stage must be one of" in blog and "got 4" in blog, blog
    assert code == 0, node.log()[-3000:]
    assert (run3 / "checkpoints" / "last.pt").is_file(), node.log()[-3000:]
    assert _ckpt_step(run3 / "checkpoints" / "last.pt") >= 1
    log = node.log()
    assert "saving its checkpoint" in log and "Traceback" not in log
