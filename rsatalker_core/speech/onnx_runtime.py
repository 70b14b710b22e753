"""Run a frozen speech-encoder module through ONNX Runtime on the CPU.

Streaming re-encodes the speech window at every step, and on a small CPU the Whisper
encoder dominates the step (benchmarks/results_streaming.md). ONNX Runtime runs the same graph
~1.3x faster than eager PyTorch on one core, with the same output up to float rounding
(~1e-5 absolute on Whisper tiny.en features). :class:`OnnxModule` exports a module once
with ``torch.onnx.export`` (dynamic batch and time axes, so one export serves every window
length) and runs it with an :class:`onnxruntime.InferenceSession`.

Export cache. The ``.onnx`` file is written under :func:`default_cache_dir` (override with
the ``RSATALKER_CACHE_DIR`` environment variable), named by a sha256 over the module's
class, every parameter and buffer (names, shapes, bytes), the torch version and the
export settings: other weights or another torch give another file, never a stale graph.
Writes are atomic (temporary file + rename). When no cache directory is writable the
graph is exported in memory for this process only.

``onnxruntime`` and ``onnx`` (which ``torch.onnx.export`` needs) are optional:
:func:`onnxruntime_available` says whether both are importable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import warnings
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from rsatalker_core.errors import SpeechEncoderError
from rsatalker_core.io.outputs import atomic_write_bytes

log = logging.getLogger("rsatalker.speech")

#: ONNX opset of the exported graphs.
OPSET = 17
#: Bumped when the export recipe changes (part of the cache key).
EXPORT_VERSION = 1


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` (to run) and ``onnx`` (for ``torch.onnx.export``) import."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def default_cache_dir() -> str:
    """Directory of exported graphs: ``$RSATALKER_CACHE_DIR/onnx``, else
    ``$XDG_CACHE_HOME/rsatalker/onnx``, else ``~/.cache/rsatalker/onnx``."""
    root = os.environ.get("RSATALKER_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "rsatalker")
    return os.path.join(root, "onnx")


def default_intra_op_threads() -> int:
    """ONNX Runtime intra-op threads: 1 on machines with <= 2 usable cores (the other core
    stays with the renderer and ROS), else torch's intra-op thread count."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 1 if cores <= 2 else max(1, torch.get_num_threads())


def module_digest(module: nn.Module, extra: str = "") -> str:
    """Hex sha256 over ``module``'s class, parameters and buffers, torch version and ``extra``."""
    h = hashlib.sha256()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}|{torch.__version__}|"
             f"opset{OPSET}|v{EXPORT_VERSION}|{extra}".encode())
    named = list(module.named_parameters()) + list(module.named_buffers())
    for name, t in sorted(named, key=lambda kv: kv[0]):
        arr = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(arr.shape)}:{arr.dtype}".encode())
        if arr.numel():
            h.update(arr.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class OnnxModule:
    """A frozen one-input, one-output ``module`` exported to ONNX and run by ONNX Runtime.

    Args:
        module: torch module ``forward(x) -> y`` (eval mode, no autograd needed).
        example: an input of the right rank and dtype for the export trace.
        dynamic_axes: ``{axis: name}`` of the input that vary between calls, and the same
            for the output (``(input_axes, output_axes)``).
        name: file-name stem of the cached graph.
        cache_dir: where the graph is cached; ``None``: :func:`default_cache_dir`; ``""``:
            export in memory only.
        intra_op_threads: ONNX Runtime intra-op threads; ``None``:
            :func:`default_intra_op_threads`.

    Raises:
        SpeechEncoderError: ``onnxruntime``/``onnx`` not installed, or the export or the
            session failed (the message says which).
    """

    def __init__(
        self,
        module: nn.Module,
        example: Tensor,
        dynamic_axes: Tuple[Dict[int, str], Dict[int, str]],
        name: str,
        cache_dir: Optional[str] = None,
        intra_op_threads: Optional[int] = None,
    ):
        if not onnxruntime_available():
            raise SpeechEncoderError(
                "speech.runtime 'onnx' needs the packages onnxruntime and onnx "
                "(pip install -r requirements-core.txt), or use speech.runtime 'torch'"
            )
        import onnxruntime as ort

        module = module.eval()
        self.digest = module_digest(module, f"{name}|{sorted(dynamic_axes[0].items())}")
        cache_dir = default_cache_dir() if cache_dir is None else cache_dir
        self.path = os.path.join(cache_dir, f"{name}_{self.digest[:20]}.onnx") if cache_dir else ""
        if self.path and os.path.isfile(self.path):
            source: object = self.path
        else:
            graph = _export(module, example, dynamic_axes)
            source = graph
            if self.path:
                try:
                    atomic_write_bytes(self.path, graph)
                    source = self.path
                    log.info("exported %s to ONNX: %s", name, self.path)
                except OSError as exc:
                    log.warning("cannot cache the ONNX graph in %s (%s); exported in memory", cache_dir, exc)
                    self.path = ""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads or default_intra_op_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a corrupt cache file or an operator ORT lacks
            raise SpeechEncoderError(f"ONNX Runtime cannot load the exported {name}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.intra_op_threads = opts.intra_op_num_threads

    def __call__(self, x: Tensor) -> Tensor:
        """Run the graph on ``x`` (any device; computed on the CPU) -> output on ``x.device``."""
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        y = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(y).to(x.device)


def _export(module: nn.Module, example: Tensor, dynamic_axes: Tuple[Dict[int, str], Dict[int, str]]) -> bytes:
    """``module`` as serialized ONNX (TorchScript-based exporter: fast, no onnxscript)."""
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and trace notes
            torch.onnx.export(
                module, (example,), buf, dynamo=False, opset_version=OPSET,
                input_names=["x"], output_names=["y"],
                dynamic_axes={"x": dict(dynamic_axes[0]), "y": dict(dynamic_axes[1])},
            )
    except Exception as exc:
        raise SpeechEncoderError(f"torch.onnx.export failed: {exc}") from exc
    return buf.getvalue()


__all__: Sequence[str] = ("OnnxModule", "onnxruntime_available", "default_cache_dir",
                          "default_intra_op_threads", "module_digest")
