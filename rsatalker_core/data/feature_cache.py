"""On-disk cache of speech features for training windows.

The paper keeps the speech encoder frozen in every training stage (docs/method.md §7), so a
window's features never change and can be computed once. An entry is keyed by

* the **encoder fingerprint** (:func:`encoder_fingerprint`): sha256 over the encoder's class,
  name, feature width, sample rate, its simple settings (e.g. Whisper's ``pad_to_30s``), the
  optional :class:`~rsatalker_core.config.SpeechConfig`, and the bytes of every parameter and
  buffer — new weights or settings give a new key, never stale features;
* the **audio file's content** (sha256 of its bytes, :func:`file_sha256`; a renamed or
  copied file still hits, an edited one misses);
* the **window**: first frame and number of frames (25 fps).

Features are computed **per window**, from the window's audio alone (``encoder(wav[None],
sr, num_frames)``), never cut out of a whole-clip encoding. This matters for Whisper: its
log-mel normalisation and absolute positional embeddings make a frame's features depend
on the window it is encoded in (see :mod:`rsatalker_core.speech.whisper`), and the
live system also encodes short windows. A different window grid therefore gives different
cache entries.

Layout: ``<root>/<fingerprint[:16]>/encoder.json`` (what the fingerprint covers) and
``<root>/<fingerprint[:16]>/<sha[:2]>/<sha[:32]>_s<start>_n<frames>.npy`` (float32
``[T, D]``, a plain ``.npy`` read with ``np.load(mmap_mode="r")``: memory-mapped, so every
process reading an entry shares its pages in the OS page cache). Size: ``128 + 4 T D``
bytes per entry, i.e. ``360 kB x D`` per hour of one audio track at 25 fps (whole-clip
windows; overlapping windows multiply it by ``window_frames / stride_frames``): 138 MB/h
for Whisper tiny (``D = 384``), 276 MB/h for wav2vec 2.0 base (``D = 768``). The cache is
built once before training (rank 0 and the others sharded by rank under data
parallelism, :func:`rsatalker_core.training.stage1.fill_feature_cache`) and reused by
every rank and every later run with the same encoder. Writes go to a temporary file in the same directory and are renamed into place
(atomic on POSIX), so concurrent DataLoader workers and crashes never leave half an entry.
An entry that cannot be read, or has the wrong shape or non-finite values, is recomputed
and rewritten (counted in :attr:`FeatureCache.stats` as ``"recomputed"``), never fatal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import threading
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from rsatalker_core.config import SpeechConfig
from rsatalker_core.errors import AudioError
from rsatalker_core.speech.encoder import SpeechEncoder
from rsatalker_core.io.outputs import atomic_write_bytes

log = logging.getLogger(__name__)

_SHA_MEMO: Dict[Tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """Hex sha256 of a file's bytes, memoised in-process by (path, size, mtime).

    Raises:
        AudioError: the file cannot be read (the message names it).
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AudioError(f"cannot read {path} to hash it ({exc})") from exc
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        hit = _SHA_MEMO.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise AudioError(f"cannot read {path} to hash it ({exc})") from exc
    digest = h.hexdigest()
    with _SHA_LOCK:
        _SHA_MEMO[key] = digest
    return digest


def _simple_settings(module: torch.nn.Module) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in sorted(vars(module).items()):
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, (bool, int, float, str)):
            out[k] = v
    return out


def encoder_fingerprint(encoder: SpeechEncoder, speech_cfg: Optional[SpeechConfig] = None) -> Tuple[str, dict]:
    """Identify a speech encoder's exact input -> feature mapping.

    Args:
        encoder: the (frozen) speech encoder.
        speech_cfg: its config, folded into the key when given.

    Returns:
        ``(hex sha256, description dict)``; the description (class, name, settings, config,
        tensor names/shapes) is JSON-serialisable and written next to the entries.
    """
    desc = {
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "name": getattr(encoder, "name", ""),
        "feature_dim": int(encoder.feature_dim),
        "sample_rate": int(encoder.sample_rate),
        "fps": int(encoder.fps),
        "settings": {
            name or "<root>": _simple_settings(m) for name, m in encoder.named_modules()
            if _simple_settings(m)
        },
        "speech_config": dataclasses.asdict(speech_cfg) if speech_cfg is not None else None,
    }
    h = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode())
    tensors = []
    named = list(encoder.named_parameters()) + list(encoder.named_buffers())
    for name, t in sorted(named, key=lambda kv: kv[0]):
        arr = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(arr.shape)}:{arr.dtype}".encode())
        h.update(arr.view(torch.uint8).numpy().tobytes() if arr.numel() else b"")
        tensors.append([name, list(arr.shape), str(arr.dtype)])
    desc["tensors"] = tensors
    return h.hexdigest(), desc


class FeatureCache:
    """Per-window speech features, computed with a frozen encoder and cached on disk.

    Args:
        encoder: the speech encoder (kept frozen; features are computed under
            ``torch.no_grad()`` on its device).
        root: cache directory; ``None`` or ``""`` computes without caching (same code path).
        speech_cfg: the encoder's config, folded into the key.

    Attributes:
        fingerprint: hex sha256 of the encoder (see :func:`encoder_fingerprint`).
        stats: counters ``{"hits", "misses", "recomputed"}`` since construction.

    Example:
        >>> cache = FeatureCache(build_speech_encoder(SpeechConfig(encoder="logmel")), "cache/")
        >>> feats = cache.window_features("clip_speaker1.wav", 100, 50, lambda: (wav, 16000))
        >>> feats.shape
        torch.Size([50, 80])
    """

    def __init__(
        self,
        encoder: SpeechEncoder,
        root: Union[str, os.PathLike, None] = None,
        speech_cfg: Optional[SpeechConfig] = None,
    ):
        self.encoder = encoder
        self.fingerprint, self.description = encoder_fingerprint(encoder, speech_cfg)
        self.root = os.fspath(root) if root else ""
        self.dir = os.path.join(self.root, self.fingerprint[:16]) if self.root else ""
        self.stats = {"hits": 0, "misses": 0, "recomputed": 0}
        if self.dir:
            os.makedirs(self.dir, exist_ok=True)
            meta = os.path.join(self.dir, "encoder.json")
            if not os.path.isfile(meta):
                atomic_write_bytes(
                    meta, json.dumps(dict(self.description, fingerprint=self.fingerprint), indent=1).encode()
                )

    @property
    def feature_dim(self) -> int:
        """Width ``D`` of the cached features."""
        return int(self.encoder.feature_dim)

    def entry_path(self, wav_path: Union[str, os.PathLike], start: int, num_frames: int) -> str:
        """Cache file of the window ``[start, start + num_frames)`` frames of ``wav_path``
        (``""`` when caching is off)."""
        if not self.dir:
            return ""
        sha = file_sha256(wav_path)
        return os.path.join(self.dir, sha[:2], f"{sha[:32]}_s{int(start)}_n{int(num_frames)}.npy")

    def encode(self, wav: np.ndarray, sample_rate: int, num_frames: int) -> Tensor:
        """Encode one window: ``wav [S]`` at ``sample_rate`` Hz -> ``[num_frames, D]`` float32
        on the CPU (no caching)."""
        x = torch.as_tensor(np.ascontiguousarray(wav, dtype=np.float32))[None]
        with torch.no_grad():
            feats = self.encoder(x, sample_rate, num_frames)[0]
        return feats.detach().to("cpu", torch.float32).contiguous()

    def window_features(
        self,
        wav_path: Union[str, os.PathLike],
        start: int,
        num_frames: int,
        audio: Callable[[], Tuple[np.ndarray, int]],
    ) -> Tensor:
        """Features of one window of one audio file, from the cache or freshly computed.

        Args:
            wav_path: the audio file (its content hash keys the entry).
            start: first frame of the window (25 fps).
            num_frames: window length ``T``, frames.
            audio: called on a miss; returns the window's audio ``(wav [S], sample_rate)``.

        Returns:
            ``[T, D]`` float32 CPU tensor.
        """
        path = self.entry_path(wav_path, start, num_frames)
        if path and os.path.isfile(path):
            feats = self._read(path, num_frames)
            if feats is not None:
                self.stats["hits"] += 1
                return feats
            self.stats["recomputed"] += 1
            log.warning("feature cache entry %s is corrupt; recomputing it", path)
        else:
            self.stats["misses"] += 1
        wav, sr = audio()
        feats = self.encode(wav, sr, num_frames)
        if path:
            buf = _npy_bytes(feats.numpy())
            atomic_write_bytes(path, buf)
        return feats

    def _read(self, path: str, num_frames: int) -> Optional[Tensor]:
        try:
            # Memory-mapped: the pages come from the OS page cache, shared by every process
            # (DataLoader workers, data-parallel ranks, later runs) reading the same entry.
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            log.debug("unreadable cache entry %s: %s", path, exc)
            return None
        if (
            arr.ndim != 2
            or arr.shape != (int(num_frames), self.feature_dim)
            or arr.dtype != np.float32
            or not np.isfinite(arr).all()
        ):
            return None
        return torch.from_numpy(np.array(arr))  # a private copy: the batch may be modified


def _npy_bytes(arr: np.ndarray) -> bytes:
    bio = io.BytesIO()
    np.save(bio, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    return bio.getvalue()


