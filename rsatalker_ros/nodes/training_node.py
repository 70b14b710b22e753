"""Training node: runs one of RSATalker's training stages (docs/method.md §7) from ROS parameters,
in a background thread, and reports its progress on a topic.

Publishes (see :mod:`rsatalker_ros.topics`):
    ``training/progress`` (rsatalker/TrainingProgress, reliable, transient local): state
    ``running`` with step, loss and ETA after training steps (at most one report every
    ``progress_period`` s), then one final report ``finished`` (with the checkpoint and the
    stage's final weights), ``cancelled`` (with the checkpoint the run stopped at) or
    ``failed`` (with the reason). ``idle`` is reported when the node starts without a run.

Services:
    ``~/start`` (std_srvs/Trigger): start a run with the current parameters (refused while
    one runs). ``~/cancel`` (std_srvs/Trigger): stop the run after its current step; the
    Trainer saves ``<train.out_dir>/checkpoints/last.pt`` (:meth:`Trainer.request_stop`), so
    nothing is lost: set ``resume`` to ``auto`` and call ``~/start`` to continue it, or run
    ``rsatalker train --stage N --resume``. Shutting the node down (Ctrl-C / SIGINT, SIGTERM,
    ``destroy_node``) cancels the run the same way and waits for its checkpoint.

Parameters: ``config_file`` (read-only; the defaults of everything else), ``device``,
``seed`` (read-only), ``stage`` (1 motion generator, 2 renderer, 3 joint), ``resume``
(``''`` start afresh, ``auto`` continue ``train.out_dir``'s checkpoint, or a checkpoint
path), ``autostart`` (start a run when the node starts), ``progress_period`` and every
``train.*`` and ``data.*`` field of :mod:`rsatalker_core.config` under its config name
(``train.max_steps``, ``train.out_dir``, ``data.root``, ...). ``stage``, ``resume``,
``progress_period``, ``train.*`` and ``data.*`` may change while the node runs; a change
applies to the next run. An invalid ``stage`` is refused with a logged reason; a run that
cannot start (bad config, data or checkpoint) is logged and reported ``failed``. In both
cases the node keeps running.

The training itself is :class:`rsatalker_core.training.Trainer` (tqdm, TensorBoard,
``log.jsonl``, atomic checkpoints, exact resume); the node only adds the progress callback
(``Trainer(on_progress=...)``) and the services.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from rsatalker.msg import TrainingProgress
from rsatalker_core.config import DataConfig, TrainConfig, field_specs, to_dict
from rsatalker_core.errors import RsatalkerError
from rsatalker_ros import topics
from rsatalker_ros.conversions import ConversionError, training_progress_to_msg
from rsatalker_ros.nodes.common import run_node
from rsatalker_ros.params import CONFIG_FILE, ParameterSet, ParamSpec, param_spec

NODE_NAME = "training_node"
CONFIG_PREFIXES = ["device", "seed"]
#: Training stages: number -> what it trains (as rsatalker_core.training.STAGES).
STAGE_NAMES = {1: "motion generator", 2: "renderer", 3: "joint"}


def _section_specs(section: str, cls: type) -> Dict[str, ParamSpec]:
    """A live :class:`ParamSpec` for every leaf field of config dataclass ``cls``, nested
    sections included (``train.stage2.lambda_pos``), described by the field metadata of
    :mod:`rsatalker_core.config`."""
    return {name: dataclasses.replace(param_spec(fs), description=fs.description + "; applies to the next run",
                                      live=True)
            for name, fs in field_specs(cls, section + ".").items()}


#: The ``train.*`` and ``data.*`` parameters (config names; defaults from ``config_file``).
TRAIN_SPECS: Dict[str, ParamSpec] = {
    **_section_specs("train", TrainConfig),
    **_section_specs("data", DataConfig),
}
EXTRA_PARAMS = {
    "stage": (1, ParamSpec("training stage: 1 = motion generator, 2 = renderer, 3 = joint", live=True)),
    "resume": ("", ParamSpec(
        "'' = start afresh (refused if train.out_dir holds a checkpoint); 'auto' = continue "
        "train.out_dir/checkpoints/last.pt; or a checkpoint path", live=True)),
    "autostart": (True, ParamSpec("start a run with the start-up parameters when the node starts")),
    "progress_period": (1.0, ParamSpec(
        "least time between two 'running' progress reports, seconds; 0 = after every step",
        float_range=(0.0, 3600.0), live=True)),
}
#: How long shutdown waits for a cancelled run to finish its step and save, seconds.
SHUTDOWN_TIMEOUT_S = 300.0


class _NodeHandlesSignals(logging.Filter):
    """Drops the Trainer's warning that Ctrl-C in a non-main thread saves nothing: in this
    node, shutdown (Ctrl-C / SIGTERM) cancels the run through ``request_stop`` and waits
    for its checkpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("training outside the main thread")


logging.getLogger("rsatalker.train").addFilter(_NodeHandlesSignals())


class _TrainingParameterSet(ParameterSet):
    """:class:`ParameterSet` plus the ``train.*`` / ``data.*`` config names, declared with
    the config file's values as defaults like the node sections."""

    def __init__(self, node: Node, extra: Dict[str, Tuple[Any, ParamSpec]], on_change: Any):
        super().__init__(node, CONFIG_PREFIXES, extra, on_change)
        self.config_params = self.config_params + list(TRAIN_SPECS)
        self.specs.update(TRAIN_SPECS)

    def names(self) -> List[str]:
        return [CONFIG_FILE] + self.config_params + list(self.extra)


def parameter_names() -> List[str]:
    """Every parameter the training node declares."""
    from rsatalker_ros.params import config_names

    return [CONFIG_FILE] + config_names(CONFIG_PREFIXES) + list(TRAIN_SPECS) + list(EXTRA_PARAMS)


def stage_error(value: Any) -> Optional[str]:
    """Why ``value`` is not a training stage, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in STAGE_NAMES:
        choices = ", ".join(f"{k} ({v})" for k, v in STAGE_NAMES.items())
        return f"stage must be one of {choices}, got {value!r}"
    return None


class TrainingNode(Node):
    """See the module docstring. ``kwargs`` go to :class:`rclpy.node.Node`.

    Raises:
        ConfigError: a bad config file or read-only parameter value at start-up.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._declared = False
        self.add_on_set_parameters_callback(self._check_stage)
        self.params = _TrainingParameterSet(self, EXTRA_PARAMS, on_change=None)
        self.params.declare()
        self._declared = True
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._trainer: Any = None
        self._cancel = False
        self._last_report = 0.0
        self._stage_num = 0
        self.state = TrainingProgress.STATE_IDLE
        self.last_progress: Dict[str, Any] = {}
        self._pub = self.create_publisher(TrainingProgress, topics.TRAINING_PROGRESS, topics.TRAINING_PROGRESS_QOS)
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/cancel", self._srv_cancel)
        if self.params.value("autostart"):
            ok, why = self.start()
            if not ok:
                self.get_logger().error(f"training not started: {why}; the node keeps running (fix the "
                                        "parameters and call ~/start)")
        else:
            self._publish(TrainingProgress.STATE_IDLE, 0, 0)
            self.get_logger().info("idle: call ~/start to train")

    def _log(self, level: str, text: str) -> None:
        """The node's logger, or plain stderr once the context is shut down (Ctrl-C), when
        the ROS logger could no longer reach /rosout."""
        if self.context.ok():
            # one call site per severity: rclpy refuses a severity change at a call site
            if level == "error":
                self.get_logger().error(text)
            elif level == "warning":
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
        else:
            print(f"[{level.upper()}] [{self.get_name()}]: {text}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ parameters
    def _check_stage(self, params: List[Parameter]) -> SetParametersResult:
        """Refuse an invalid ``stage`` set while the node runs (start-up values are checked
        when a run starts, so a bad start-up value leaves the node running)."""
        for p in params:
            if p.name == "stage" and self._declared:
                reason = stage_error(p.value)
                if reason is not None:
                    self.get_logger().warning(f"refused stage={p.value!r}: {reason}")
                    return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ runs
    @property
    def running(self) -> bool:
        """A run's thread is alive (building the stage or training)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Tuple[bool, str]:
        """Start a run with the current parameters in a background thread.

        Returns:
            ``(started, message)``; not started while a run is in progress or when
            ``stage`` is invalid (reported ``failed``).
        """
        with self._lock:
            if self.running:
                return False, f"a stage-{self._stage_num} run is in progress (call ~/cancel first)"
            stage = self.params.value("stage")
            reason = stage_error(stage)
            if reason is not None:
                self._publish(TrainingProgress.STATE_FAILED, 0, 0, message=reason, stage=0)
                return False, reason
            self._stage_num = int(stage)
            self._cancel = False
            self._trainer = None
            self.last_progress = {}
            self._thread = threading.Thread(
                target=self._run, args=(self._stage_num, self.params.value("resume")),
                name="rsatalker-train", daemon=True,
            )
            self._thread.start()
        return True, f"stage {self._stage_num} ({STAGE_NAMES[self._stage_num]}) started"

    def cancel(self) -> Tuple[bool, str]:
        """Ask the current run to stop after its step and save its checkpoint."""
        with self._lock:
            if not self.running:
                return False, "no run in progress"
            self._cancel = True
            if self._trainer is not None:
                self._trainer.request_stop()
        return True, "stopping after the current step; the checkpoint will be saved"

    def _run(self, stage_num: int, resume: str) -> None:
        """The run thread: build the stage, train, report the outcome."""
        from rsatalker_core.training import build_stage
        from rsatalker_core.training.trainer import Trainer

        max_steps = 0
        try:
            cfg = self.params.config()
            max_steps = int(cfg.train.max_steps)
            self._publish(TrainingProgress.STATE_RUNNING, 0, max_steps)
            self._log("info", f"stage {stage_num} ({STAGE_NAMES[stage_num]}): building from "
                     f"{self.params.value(CONFIG_FILE) or 'the embedded config'}, out_dir {cfg.train.out_dir}")
            stage = build_stage(stage_num, cfg)
            trainer = Trainer(stage, cfg.train, seed=cfg.seed, run_config=to_dict(cfg),
                              on_progress=self._on_progress)
            with self._lock:
                self._trainer = trainer
                cancelled_early = self._cancel
            if cancelled_early:
                self._log("warning", "cancelled before training started: nothing trained, no checkpoint written")
                self._publish(TrainingProgress.STATE_CANCELLED, 0, max_steps)
                return
            result = trainer.fit(resume=resume or None)
        except RsatalkerError as exc:
            why = f"{type(exc).__name__}: {exc}"
            self._log("error", f"training failed: {why}")
            self._publish(TrainingProgress.STATE_FAILED, self.last_progress.get("step", 0), max_steps, message=why)
            return
        except Exception as exc:  # keep the node alive whatever the stage raises
            why = f"{type(exc).__name__}: {exc}"
            self._log("error", f"training failed: {why}")
            self._publish(TrainingProgress.STATE_FAILED, self.last_progress.get("step", 0), max_steps, message=why)
            return
        loss = self.last_progress.get("loss", result.loss if result.loss is not None else math.nan)
        if result.interrupted:
            self._log("warning", f"cancelled at step {result.step}/{max_steps}; checkpoint {result.checkpoint} "
                        "(set resume:=auto and call ~/start to continue)")
            self._publish(TrainingProgress.STATE_CANCELLED, result.step, max_steps, loss=loss,
                          checkpoint=result.checkpoint)
        else:
            self._log("info", f"finished: step {result.step}, loss {loss:.6g}; checkpoint {result.checkpoint}; "
                     f"weights {result.final_weights or '(none)'}")
            self._publish(TrainingProgress.STATE_FINISHED, result.step, max_steps, loss=loss, eta_s=0.0,
                          checkpoint=result.checkpoint, final_weights=result.final_weights or "")

    def _on_progress(self, p: Any) -> None:
        """Trainer callback (training thread): honour a cancel, report at most every
        ``progress_period`` s (and always the last step)."""
        if self._cancel and self._trainer is not None:
            self._trainer.request_stop()
        self.last_progress = {"step": p.step, "loss": p.loss}
        now = time.monotonic()
        period = float(self.params.value("progress_period"))
        if now - self._last_report >= period or p.step >= p.max_steps:
            self._last_report = now
            self._publish(TrainingProgress.STATE_RUNNING, p.step, p.max_steps, loss=p.loss, eta_s=p.eta_s)

    def _publish(self, state: str, step: int, max_steps: int, loss: float = math.nan, eta_s: float = math.nan,
                 checkpoint: str = "", final_weights: str = "", message: str = "",
                 stage: Optional[int] = None) -> None:
        self.state = state
        if not self.context.ok():  # shut down (Ctrl-C): nothing can be published any more
            return
        try:
            msg = training_progress_to_msg(
                self._stage_num if stage is None else stage, step, max_steps, state,
                loss=loss if math.isfinite(loss) else math.nan, eta_s=eta_s,
                checkpoint=checkpoint, final_weights=final_weights, message=message[:2000],
                stamp_ns=self.get_clock().now().nanoseconds,
            )
            self._pub.publish(msg)
        except ConversionError as exc:
            self.get_logger().warning(f"progress report dropped: {exc}", throttle_duration_sec=5.0)
        except Exception as exc:  # the context went down meanwhile
            self._log("warning", f"{state} report at step {step} not published: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ services
    def _srv_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.start()
        if not response.success:
            self.get_logger().warning(f"~/start refused: {response.message}")
        return response

    def _srv_cancel(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.cancel()
        if response.success:
            self.get_logger().info("cancel requested: " + response.message)
        return response

    def destroy_node(self) -> None:
        """Cancel a run (its checkpoint is saved), wait for it, then destroy the node."""
        if self.running:
            self.cancel()
            self._log("warning", "shutting down: stopping training after the current step and saving its checkpoint")
            self._thread.join(timeout=SHUTDOWN_TIMEOUT_S)
            if self._thread.is_alive():
                self._log("error", f"training did not stop within {SHUTDOWN_TIMEOUT_S:.0f} s")
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rsatalker training_node --ros-args -p stage:=1 -p config_file:=config/train_stage1.yaml
    -p data.root:=/data/dualtalk``."""
    return run_node(TrainingNode, NODE_NAME, args, context_survives_signals=True)


if __name__ == "__main__":
    raise SystemExit(main())
