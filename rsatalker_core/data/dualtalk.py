"""DualTalk-layout dyadic clips as a PyTorch ``Dataset`` of training windows.

Layout (docs/data.md §1): ``<root>/<split>/<clip>_speaker{1,2}.wav`` (16 kHz mono, real files
are IEEE float32) and ``<clip>_speaker{1,2}.npz`` (FLAME ``exp (T, 50)``, ``pose (T, 6)`` =
``[head | jaw]`` axis-angle radians, 25 fps). ``split`` is ``train``, ``test`` or ``ood``;
``""`` reads clips lying directly in ``root`` (like the real sample in
``shared/data/dualtalk_sample``). The synthetic corpus of :mod:`.synthetic` uses the same
layout and is read by the same code (its items carry ``synthetic=True``).

**Samples.** Each clip gives up to two samples, one per speaker taking the avatar's role
("self", speaker B of the paper) with the other as the partner (speaker A). A sample needs
the self speaker's npz (its supervision) and both speakers' wavs. When the partner's npz is
missing (the real sample has only speaker 2's npz) the sample is kept, its
``partner_motion`` is all zeros — FLAME's neutral face: zero expression, closed jaw, head
facing the camera — and ``partner_motion_valid`` is ``False`` so a training loop can mask or
drop it. A clip with no npz at all supervises nothing and is listed in
:attr:`DualTalkDataset.skipped`.

**Lengths.** A clip's length ``T`` is the shortest of its wavs (in complete 25-fps frames,
:func:`rsatalker_core.audio.num_frames_for`) and its npz tracks. The wav and npz of one
speaker, and the two speakers' wavs and npz, may differ by at most
``DataConfig.length_tolerance_frames`` (default 2 = 80 ms: the wav and the tracked video
are cut separately and round to different frame boundaries; a 23.49-s clip spans 587.2
frames of audio and has 587 tracked frames). Larger differences mean mismatched files and
raise :class:`DatasetError` naming both files. File headers are checked when the dataset is
built (truncated WAVs, npz without ``exp``/``pose``, wrong shapes); sample values when a
clip is first read.

**Windows.** Window starts are ``0, stride, 2 * stride, ...`` while the window fits, plus
one window ending at the clip's last frame when the stride leaves a tail uncovered
(:func:`window_starts`). ``window_frames = 0``, or a clip shorter than the window, gives
one window of the whole clip. Every window's tensors are fresh copies of its own slice (a
test guards against DualTalk's loader bug where all windows shared the last chunk).

Example:
    >>> ds = DualTalkDataset(DataConfig(root="data", split="train", window_frames=100))
    >>> item = ds[0]
    >>> item["self_motion"].shape, item["self_audio"].shape
    (torch.Size([100, 56]), torch.Size([64000]))
    >>> batch = collate_windows([ds[0], ds[1]])
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from rsatalker_core.speech.audio import check_not_truncated, load_audio, num_frames_for, validate_sample_rate
from rsatalker_core.config import FPS, MOTION_DIM, DataConfig
from rsatalker_core.head.flame import FLAME_SPACE
from rsatalker_core.errors import AudioError, ConfigError, DatasetError, MotionFileError
from rsatalker_core.io.motion_npz import load_motion_npz
from rsatalker_core.data.relationships import check_policy, load_relationship_index
from rsatalker_core.data.feature_cache import FeatureCache
from rsatalker_core.relationship import Relationship

log = logging.getLogger(__name__)

#: Metadata file that marks a corpus as synthetic supervision (:mod:`.synthetic` writes it).
SYNTHETIC_METADATA = "synthetic_corpus.json"
SPLITS = ("train", "test", "ood")
_FILE = re.compile(r"^(?P<clip>.+)_speaker(?P<spk>[12])\.(?P<ext>wav|npz)$")


@dataclass
class ClipInfo:
    """One clip's files and checked length.

    Attributes:
        clip: clip id (file-name prefix before ``_speaker``).
        wav: ``{1: path, 2: path}``.
        npz: ``{speaker: path}`` for the speakers that have motion.
        num_frames: usable length ``T`` (25 fps).
        relationship: the clip's label (or the default).
    """

    clip: str
    wav: Dict[int, str]
    npz: Dict[int, str]
    num_frames: int
    relationship: Relationship
    synthetic: bool = False
    split: str = ""


def window_starts(num_frames: int, window_frames: int, stride_frames: int) -> List[Tuple[int, int]]:
    """Windows over a clip of ``num_frames`` frames, as ``[(start, length), ...]``.

    Starts are ``0, s, 2s, ...`` while ``start + window <= num_frames``; if that leaves a
    tail uncovered, one more window ends at the last frame (``start = num_frames -
    window``). ``window_frames == 0`` or ``num_frames <= window_frames``: one window
    ``(0, num_frames)``. An empty clip gives no windows.

    Raises:
        ConfigError: negative window or a stride < 1.
    """
    if window_frames < 0:
        raise ConfigError(f"data.window_frames must be >= 0, got {window_frames}")
    if stride_frames < 1:
        raise ConfigError(f"data.stride_frames must be >= 1, got {stride_frames}")
    if num_frames <= 0:
        return []
    if window_frames == 0 or num_frames <= window_frames:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - window_frames + 1, stride_frames))
    if starts[-1] + window_frames < num_frames:
        starts.append(num_frames - window_frames)
    return [(s, window_frames) for s in starts]


def _wav_frames(path: str) -> int:
    """Complete 25-fps frames of an audio file, from its header (truncation checked)."""
    try:
        with sf.SoundFile(path) as handle:
            check_not_truncated(path, handle)
            sr = validate_sample_rate(handle.samplerate, f"sample rate of {path}")
            n = handle.frames
    except sf.SoundFileError as exc:
        raise AudioError(f"not a readable audio file: {path} ({exc})") from exc
    if n <= 0:
        raise AudioError(f"audio file {path} holds no samples")
    return num_frames_for(n, sr)


def _npz_frames(path: str) -> int:
    """Frames of a DualTalk npz from its array headers (keys and shapes checked)."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [k for k in ("exp", "pose") if f"{k}.npy" not in names]
            if missing:
                have = sorted(n[:-4] for n in names if n.endswith(".npy"))
                raise MotionFileError(
                    f"{path}: npz lacks key(s) {', '.join(missing)} (has: {', '.join(have) or 'none'})"
                )
            for key in ("exp", "pose"):
                with zf.open(f"{key}.npy") as fh:
                    version = np.lib.format.read_magic(fh)
                    reader = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shapes[key] = reader(fh)[0]
    except MotionFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise MotionFileError(f"{path}: not a readable npz ({exc})") from exc
    exp, pose = shapes["exp"], shapes["pose"]
    if len(exp) != 2 or exp[1] < 50:
        raise MotionFileError(f"{path}: 'exp' must be (T, >=50), got {exp}")
    if len(pose) != 2 or pose[1] != 6:
        raise MotionFileError(f"{path}: 'pose' must be (T, 6), got {pose}")
    if exp[0] != pose[0]:
        raise MotionFileError(f"{path}: 'exp' has {exp[0]} frames but 'pose' has {pose[0]}")
    if exp[0] == 0:
        raise MotionFileError(f"{path}: motion has no frames")
    return int(exp[0])


def discover_clips(directory: str) -> Dict[str, Dict[str, Dict[int, str]]]:
    """``{clip: {"wav": {spk: path}, "npz": {spk: path}}}`` for files named
    ``<clip>_speaker{1,2}.{wav,npz}`` in ``directory`` (other files are ignored)."""
    clips: Dict[str, Dict[str, Dict[int, str]]] = {}
    for name in sorted(os.listdir(directory)):
        m = _FILE.match(name)
        if m is None:
            continue
        entry = clips.setdefault(m["clip"], {"wav": {}, "npz": {}})
        entry[m["ext"]][int(m["spk"])] = os.path.join(directory, name)
    return clips


class DualTalkDataset(Dataset):
    """Training windows of dyadic clips in the DualTalk layout (see the module docstring).

    Args:
        cfg: :class:`DataConfig`.
        encoder: optional frozen speech encoder; items then carry ``self_features`` /
            ``partner_features`` ``[T, D]`` computed per window (and cached on disk when
            ``cfg.feature_cache`` is set; :mod:`.feature_cache`). With DataLoader workers,
            use a CPU encoder or fill the cache first with :meth:`precompute_features`.
        return_audio: include the window audio even when ``encoder`` is given.

    Items (``ds[i]``): ``clip`` str, ``split`` str, ``self_speaker`` / ``partner_speaker``
    int (1 or 2), ``start`` int (first frame), ``num_frames`` int ``T``, ``sample_rate`` int
    Hz, ``self_audio`` / ``partner_audio`` ``[T * sample_rate / 25]`` float32,
    ``self_motion`` ``[T, 56]``, ``partner_motion`` ``[T, 56]`` (zeros when missing),
    ``partner_motion_valid`` bool tensor ``[]``, ``blood`` / ``equal`` long tensors ``[]``
    (1 = blood / equal; :func:`rsatalker_core.relationship.relationship_tensors`),
    ``relationship`` str, ``synthetic`` bool.

    Raises:
        DatasetError: missing root/split, a clip missing a speaker's wav, lengths that differ
            beyond the tolerance, or no supervisable clip at all.
        AudioError, MotionFileError: a truncated/unreadable wav or a malformed npz (named).
        RelationshipError: a bad index, or an unlabelled clip under policy ``"refuse"``.
        ConfigError: bad window/stride/sample rate.
    """

    def __init__(self, cfg: DataConfig, encoder=None, return_audio: bool = False):
        self.cfg = cfg
        check_policy(cfg.unlabelled)
        Relationship.parse(cfg.default_relationship)
        self.sample_rate = validate_sample_rate(cfg.sample_rate, "data.sample_rate")
        if self.sample_rate % FPS:
            raise ConfigError(f"data.sample_rate {self.sample_rate} Hz is not a whole number of samples per frame")
        self.samples_per_frame = self.sample_rate // FPS
        window_starts(1, cfg.window_frames, cfg.stride_frames)  # validates both
        if not cfg.root or not os.path.isdir(cfg.root):
            raise DatasetError(f"dataset root not found: {cfg.root!r}")
        self.directory = os.path.join(cfg.root, cfg.split) if cfg.split else cfg.root
        if not os.path.isdir(self.directory):
            have = sorted(d for d in os.listdir(cfg.root) if os.path.isdir(os.path.join(cfg.root, d)))
            raise DatasetError(
                f"split '{cfg.split}' not found: no directory {self.directory} (root has: {', '.join(have) or 'none'})"
            )
        self.synthetic = os.path.isfile(os.path.join(cfg.root, SYNTHETIC_METADATA))
        self.metadata: Optional[dict] = None
        if self.synthetic:
            with open(os.path.join(cfg.root, SYNTHETIC_METADATA), "r", encoding="utf-8") as fh:
                self.metadata = json.load(fh)
            log.info("%s is a SYNTHETIC-SUPERVISION corpus (rule-based motion targets)", cfg.root)
        self.index = load_relationship_index(cfg.relationship_index)
        self.encoder = encoder
        self.return_audio = bool(return_audio or encoder is None)
        self.features = FeatureCache(encoder, cfg.feature_cache or None) if encoder is not None else None

        self.clips: List[ClipInfo] = []
        self.skipped: List[Tuple[str, str]] = []
        for clip, files in discover_clips(self.directory).items():
            info = self._check_clip(clip, files)
            if info is not None:
                self.clips.append(info)
        # (clip index, self speaker, start, length) for every window.
        self.windows: List[Tuple[int, int, int, int]] = []
        for ci, info in enumerate(self.clips):
            for spk in sorted(info.npz):
                for start, length in window_starts(info.num_frames, cfg.window_frames, cfg.stride_frames):
                    self.windows.append((ci, spk, start, length))
        if not self.windows:
            why = "; ".join(f"{c}: {r}" for c, r in self.skipped) or "no <clip>_speaker{1,2}.{wav,npz} files"
            raise DatasetError(f"no supervisable clip in {self.directory} ({why})")
        self._cache: "OrderedDict[int, dict]" = OrderedDict()

    # ------------------------------------------------------------------ building
    def _check_clip(self, clip: str, files: Dict[str, Dict[int, str]]) -> Optional[ClipInfo]:
        wav, npz = files["wav"], files["npz"]
        if not npz:
            self.skipped.append((clip, "no npz motion for either speaker"))
            log.info("skipping clip %s: no npz motion for either speaker", clip)
            return None
        for spk in (1, 2):
            if spk not in wav:
                raise DatasetError(
                    f"clip {clip} in {self.directory} has no speaker{spk} wav "
                    f"(expected {clip}_speaker{spk}.wav); both speakers' audio is needed"
                )
        tol = int(self.cfg.length_tolerance_frames)
        wav_t = {s: _wav_frames(p) for s, p in wav.items()}
        npz_t = {s: _npz_frames(p) for s, p in npz.items()}

        def check(a: str, ta: int, b: str, tb: int) -> None:
            if abs(ta - tb) > tol:
                raise DatasetError(
                    f"length mismatch: {a} spans {ta} frames but {b} spans {tb} frames "
                    f"(25 fps; tolerance ±{tol} frames)"
                )

        for s, p in npz.items():
            check(p, npz_t[s], wav[s], wav_t[s])
        check(wav[1], wav_t[1], wav[2], wav_t[2])
        if len(npz) == 2:
            check(npz[1], npz_t[1], npz[2], npz_t[2])
        T = min(list(wav_t.values()) + list(npz_t.values()))
        rel = self.index.lookup(clip, self.cfg.unlabelled, self.cfg.default_relationship)
        return ClipInfo(clip, dict(wav), dict(npz), T, rel, self.synthetic, self.cfg.split)

    @property
    def expression_space(self) -> str:
        """Expression space of the corpus's motion: the ``expression_space`` its npz files
        record (the synthetic corpus: the stand-in head's), else :data:`FLAME_SPACE`
        (real DualTalk files carry no such key)."""
        for info in self.clips:
            for path in info.npz.values():
                with np.load(path) as data:
                    if "expression_space" in data.files:
                        return str(data["expression_space"])
                return FLAME_SPACE
        return FLAME_SPACE

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.windows)

    def num_samples(self) -> int:
        """Number of (clip, self speaker) samples (each gives one or more windows)."""
        return sum(len(c.npz) for c in self.clips)

    def _clip_data(self, ci: int) -> dict:
        hit = self._cache.get(ci)
        if hit is not None:
            self._cache.move_to_end(ci)
            return hit
        info = self.clips[ci]
        data = {"wav": {}, "motion": {}}
        for spk, path in info.wav.items():
            data["wav"][spk] = load_audio(path, self.sample_rate)[0]
        for spk, path in info.npz.items():
            data["motion"][spk] = load_motion_npz(path)
        self._cache[ci] = data
        while len(self._cache) > max(1, int(self.cfg.clip_cache_size)):
            self._cache.popitem(last=False)
        return data

    def _audio_window(self, wav: np.ndarray, start: int, length: int) -> np.ndarray:
        spf = self.samples_per_frame
        out = np.zeros(length * spf, dtype=np.float32)
        seg = wav[start * spf : (start + length) * spf]
        out[: len(seg)] = seg
        return out

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window index {i} out of range for {len(self)} windows")
        ci, spk, start, length = self.windows[i]
        info = self.clips[ci]
        data = self._clip_data(ci)
        other = 3 - spk
        self_motion = torch.from_numpy(data["motion"][spk][start : start + length].copy())
        partner = data["motion"].get(other)
        if partner is not None:
            partner_motion = torch.from_numpy(partner[start : start + length].copy())
        else:
            partner_motion = torch.zeros(length, MOTION_DIM)
        item = {
            "clip": info.clip,
            "split": info.split,
            "self_speaker": spk,
            "partner_speaker": other,
            "start": start,
            "num_frames": length,
            "sample_rate": self.sample_rate,
            "self_motion": self_motion,
            "partner_motion": partner_motion,
            "partner_motion_valid": torch.tensor(partner is not None),
            "blood": torch.tensor(int(info.relationship.blood)),
            "equal": torch.tensor(int(info.relationship.equal)),
            "relationship": info.relationship.name,
            "synthetic": info.synthetic,
        }
        audio = {s: self._audio_window(data["wav"][s], start, length) for s in (spk, other)}
        if self.return_audio:
            item["self_audio"] = torch.from_numpy(audio[spk])
            item["partner_audio"] = torch.from_numpy(audio[other])
        if self.features is not None:
            for role, s in (("self", spk), ("partner", other)):
                item[f"{role}_features"] = self.features.window_features(
                    info.wav[s], start, length, lambda s=s: (audio[s], self.sample_rate)
                )
        return item

    def precompute_features(self) -> Dict[str, int]:
        """Fill the feature cache for every window (both speakers) in this process.

        Returns:
            the cache's counters ``{"hits", "misses", "recomputed"}``.

        Raises:
            ConfigError: the dataset has no encoder.
        """
        if self.features is None:
            raise ConfigError("precompute_features needs a speech encoder (DualTalkDataset(cfg, encoder=...))")
        for i in range(len(self)):
            self[i]
        return dict(self.features.stats)


def collate_windows(items: Sequence[dict]) -> dict:
    """Batch dataset items, padding windows of different lengths with zeros.

    Returns:
        dict with the items' tensors stacked (``self_motion [B, T, 56]``, ``self_audio
        [B, T * spf]``, ``self_features [B, T, D]``, ``blood [B]``, ...), ints as long
        tensors ``[B]``, strings and bools as lists, and ``frame_mask [B, T]`` bool (True on
        real frames; ``T`` is the longest window).

    Raises:
        ValueError: an empty batch or items with different keys.
    """
    if not items:
        raise ValueError("collate_windows needs at least one item")
    keys = list(items[0])
    if any(list(it) != keys for it in items):
        raise ValueError("collate_windows: items have different keys")
    T = max(int(it["num_frames"]) for it in items)
    out: dict = {}
    for k in keys:
        vals = [it[k] for it in items]
        if isinstance(vals[0], torch.Tensor):
            if vals[0].dim() == 0:
                out[k] = torch.stack(vals)
            else:
                n = max(v.shape[0] for v in vals)
                out[k] = torch.stack(
                    [torch.nn.functional.pad(v, [0, 0] * (v.dim() - 1) + [0, n - v.shape[0]]) for v in vals]
                )
        elif isinstance(vals[0], bool) or isinstance(vals[0], str):
            out[k] = vals
        elif isinstance(vals[0], int):
            out[k] = torch.tensor(vals, dtype=torch.long)
        else:
            out[k] = vals
    out["frame_mask"] = torch.arange(T)[None, :] < out["num_frames"][:, None]
    return out
