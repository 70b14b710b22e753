"""RSATalker training triplets: (FLAME motion, relationship, video frames) for the renderer.

:class:`TripletDataset` extends the DualTalk windows of :class:`~.dualtalk.DualTalkDataset`
(speech, FLAME motion, relationship) with what renderer training (stages 2 and 3) needs:

* **Video frames**: ``<clip>_speaker{1,2}.<video_ext>`` (mp4 by default) beside the npz,
  decoded with OpenCV, converted BGR -> RGB, resized to the render size (``INTER_AREA``)
  and returned as float32 in [0, 1], one frame per 25-fps motion frame.
* **Camera**: the npz's ``cam (T, 3)`` key when present, DualTalk's weak-perspective
  camera (``scale, tx, ty``, docs/data.md §3; the DECA/EMOCA convention: normalised image
  coordinates ``x_n = s (X + tx)``, ``y_n = -s (Y + ty)`` in ``[-1, 1]`` across the crop,
  FLAME y up). :func:`weak_perspective_camera` turns it into gsplat-style ``viewmat`` /
  ``K`` (a long-focal-length pinhole, which reproduces weak perspective to within the
  head's depth / camera distance). Without ``cam`` items say ``cam_valid = False`` and the
  trainer uses the fixed default camera (``render.*``).

The target is the frame as it is: the renderer composites the head over the constant
``render.background``, so frames should show the subject over a matted background of that
colour (GaussianAvatars trains on matted frames too); DualTalk's raw crops do not, which
costs PSNR on the background but not the head.

**Checks.** A sample whose speaker has motion but no video is skipped and listed in
:attr:`TripletDataset.skipped_video` (a clip with no video at all supervises no image). The
video's frame count (from its header) must match the motion's within
``data.length_tolerance_frames``, a ``cam`` key must be ``(T, 3)`` finite and match the
motion's length, and a video that decodes fewer frames than a window needs is truncated:
each raises :class:`DatasetError` naming the file.

Example:
    >>> ds = TripletDataset(DataConfig(root="data", split="train", window_frames=1,
    ...                                stride_frames=1), width=128, height=128)
    >>> item = ds[0]
    >>> item["frames"].shape, item["cam"].shape, item["self_motion"].shape
    (torch.Size([1, 128, 128, 3]), torch.Size([1, 3]), torch.Size([1, 56]))
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rsatalker_core.config import DataConfig
from rsatalker_core.data.dualtalk import DualTalkDataset, collate_windows
from rsatalker_core.errors import DatasetError

__all__ = ["TripletDataset", "collate_triplets", "video_num_frames", "read_video_frames", "weak_perspective_camera"]


def video_num_frames(path: str) -> int:
    """Frame count a video's header declares (OpenCV ``CAP_PROP_FRAME_COUNT``).

    Raises:
        DatasetError: the file is missing or OpenCV cannot open it (named).
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such video file")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DatasetError(f"{path}: OpenCV cannot open this video (corrupt or unsupported codec)")
        n = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()
    if n <= 0:
        raise DatasetError(f"{path}: video declares no frames")
    return n


def read_video_frames(path: str, num_frames: int, width: int, height: int, start: int = 0) -> np.ndarray:
    """Decode frames ``start .. start + num_frames - 1`` as RGB uint8 ``[T, height, width, 3]``.

    Frames are resized with ``INTER_AREA`` (``INTER_LINEAR`` when enlarging). ``start > 0``
    seeks first (``CAP_PROP_POS_FRAMES``; FFmpeg decodes from the preceding key frame).

    Raises:
        DatasetError: unreadable file, a frame aspect ratio other than ``width:height``
            (more than 1 % off), or fewer decodable frames than ``num_frames`` (truncated).
    """
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise DatasetError(f"{path}: OpenCV cannot open this video (corrupt or unsupported codec)")
    out = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    try:
        if start > 0 and not cap.set(cv2.CAP_PROP_POS_FRAMES, float(start)):
            raise DatasetError(f"{path}: cannot seek to frame {start}")
        for i in range(num_frames):
            ok, bgr = cap.read()
            if not ok or bgr is None:
                raise DatasetError(
                    f"{path}: truncated video: decoded {start + i} frames, the motion needs {start + num_frames}"
                )
            h, w = bgr.shape[:2]
            if abs(w / h - width / height) > 0.01 * (width / height):
                raise DatasetError(
                    f"{path}: frames are {w}x{h}, not the render aspect {width}x{height}; crop the video "
                    "to the render aspect (the camera parameters refer to the whole frame)"
                )
            if (w, h) != (width, height):
                interp = cv2.INTER_AREA if w > width else cv2.INTER_LINEAR
                bgr = cv2.resize(bgr, (width, height), interpolation=interp)
            out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    return out


def _load_cam(path: str) -> Optional[np.ndarray]:
    """The npz's ``cam`` ``[T, 3]`` float32, or ``None`` when the key is absent."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "cam" not in data.files:
                return None
            cam = np.asarray(data["cam"], dtype=np.float32)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable npz ({exc})") from exc
    if cam.ndim != 2 or cam.shape[1] != 3:
        raise DatasetError(f"{path}: 'cam' must be (T, 3) = (scale, tx, ty), got {cam.shape}")
    if not np.isfinite(cam).all() or (cam[:, 0] <= 0).any():
        raise DatasetError(f"{path}: 'cam' holds non-finite values or a non-positive scale")
    return cam


def weak_perspective_camera(
    cam: Tensor,  # [..., 3]
    width: int,
    height: int,
    distance: float = 20.0,
) -> Tuple[Tensor, Tensor]:
    """gsplat ``viewmat`` / ``K`` reproducing DualTalk's weak-perspective camera.

    Weak perspective (DECA convention): ``x_n = s (X + tx)``, ``y_n = -s (Y + ty)`` in
    normalised coordinates ``[-1, 1]``; pixel ``u = (x_n + 1) W / 2``, ``v = (y_n + 1) H / 2``.
    The pinhole equivalent puts the camera at ``distance`` metres on +z, OpenCV axes
    (``viewmat = [[1,0,0,tx],[0,-1,0,-ty],[0,0,-1,distance]]``), with focal lengths
    ``fx = s W distance / 2`` and ``fy = s H distance / 2`` pixels; the perspective error
    is the head's depth / ``distance`` (about 1 % at 20 m for a 0.2 m deep head).

    Args:
        cam: ``(scale, tx, ty)`` per frame; scale in normalised units per metre, tx, ty
            metres. [..., 3]
        width, height: image size, pixels.
        distance: camera distance, metres (large: weak perspective is its limit).

    Returns:
        ``(viewmats [..., 4, 4], Ks [..., 3, 3])`` on ``cam``'s device and dtype.
    """
    s, tx, ty = cam[..., 0], cam[..., 1], cam[..., 2]
    lead = cam.shape[:-1]
    view = torch.zeros(*lead, 4, 4, dtype=cam.dtype, device=cam.device)
    view[..., 0, 0] = 1.0
    view[..., 1, 1] = -1.0
    view[..., 2, 2] = -1.0
    view[..., 3, 3] = 1.0
    view[..., 0, 3] = tx
    view[..., 1, 3] = -ty
    view[..., 2, 3] = distance
    K = torch.zeros(*lead, 3, 3, dtype=cam.dtype, device=cam.device)
    K[..., 0, 0] = s * width * distance / 2.0
    K[..., 1, 1] = s * height * distance / 2.0
    K[..., 0, 2] = width / 2.0
    K[..., 1, 2] = height / 2.0
    K[..., 2, 2] = 1.0
    return view, K


class TripletDataset(Dataset):
    """DualTalk windows with video frames and cameras (see the module docstring).

    Args:
        cfg: :class:`DataConfig` (``window_frames = 1, stride_frames = 1`` gives one item
            per frame, what stage 2 wants).
        width, height: frame size the items carry (the render size), pixels.
        video_ext: video file extension (``"mp4"``).
        encoder: optional frozen speech encoder (as :class:`DualTalkDataset`; stage 3).
        video_cache_size: decoded videos kept in memory (uint8 at the render size). Windows
            shorter than a quarter of their video are read by seeking, without decoding
            (or caching) the whole video, so shuffled single-frame items stay cheap.

    Items: every key of :class:`DualTalkDataset` items plus ``frames [T, H, W, 3]``
    float32 in [0, 1], ``cam [T, 3]`` (zeros when absent) and ``cam_valid`` bool tensor
    ``[]``.

    Raises:
        DatasetError: as :class:`DualTalkDataset`; a video or ``cam`` whose length does not
            match the motion, a malformed ``cam``, an unreadable or truncated video (the
            message names the file), or no sample with a video at all.
    """

    def __init__(
        self,
        cfg: DataConfig,
        width: int,
        height: int,
        video_ext: str = "mp4",
        encoder=None,
        video_cache_size: int = 2,
    ):
        if int(width) <= 0 or int(height) <= 0:
            raise DatasetError(f"TripletDataset: frame size must be positive, got {width}x{height}")
        self.base = DualTalkDataset(cfg, encoder=encoder)
        self.width, self.height = int(width), int(height)
        self.video_ext = video_ext.lstrip(".")
        self.video_cache_size = max(1, int(video_cache_size))
        tol = int(cfg.length_tolerance_frames)
        self.videos: Dict[Tuple[int, int], str] = {}
        self.cams: Dict[Tuple[int, int], Optional[np.ndarray]] = {}
        self.skipped_video: List[str] = []
        self.video_frames: Dict[Tuple[int, int], int] = {}
        for ci, info in enumerate(self.base.clips):
            for spk, npz in sorted(info.npz.items()):
                video = os.path.splitext(npz)[0] + "." + self.video_ext
                if not os.path.isfile(video):
                    self.skipped_video.append(video)
                    continue
                n_video = video_num_frames(video)
                if abs(n_video - info.num_frames) > tol:
                    raise DatasetError(
                        f"length mismatch: {video} has {n_video} frames but {npz} spans "
                        f"{info.num_frames} usable frames (25 fps; tolerance ±{tol} frames)"
                    )
                cam = _load_cam(npz)
                if cam is not None and len(cam) < info.num_frames:
                    raise DatasetError(
                        f"{npz}: 'cam' has {len(cam)} frames but the clip spans {info.num_frames}"
                    )
                self.videos[(ci, spk)] = video
                self.cams[(ci, spk)] = cam
                self.video_frames[(ci, spk)] = min(n_video, info.num_frames)
        # Windows of samples with a video, within the frames the video covers.
        self.windows = [
            w for w, (ci, spk, start, length) in enumerate(self.base.windows)
            if (ci, spk) in self.videos and start + length <= self.video_frames[(ci, spk)]
        ]
        if not self.windows:
            raise DatasetError(
                f"no sample in {self.base.directory} has a video (<clip>_speaker{{1,2}}.{self.video_ext}); "
                f"missing: {', '.join(self.skipped_video[:3])}"
            )
        self._frames: "OrderedDict[Tuple[int, int], np.ndarray]" = OrderedDict()

    @property
    def clips(self):
        """The underlying :attr:`DualTalkDataset.clips`."""
        return self.base.clips

    def __len__(self) -> int:
        return len(self.windows)

    def _video(self, key: Tuple[int, int]) -> np.ndarray:
        hit = self._frames.get(key)
        if hit is not None:
            self._frames.move_to_end(key)
            return hit
        n = self.video_frames[key]
        frames = read_video_frames(self.videos[key], n, self.width, self.height)
        self._frames[key] = frames
        while len(self._frames) > self.video_cache_size:
            self._frames.popitem(last=False)
        return frames

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"triplet index {i} out of range for {len(self)} items")
        w = self.windows[i]
        ci, spk, start, length = self.base.windows[w]
        item = self.base[w]
        key = (ci, spk)
        if key in self._frames or 4 * length > self.video_frames[key]:
            frames = self._video(key)[start : start + length]
        else:  # a short window of a long video: seek instead of decoding (and caching) it all
            frames = read_video_frames(self.videos[key], length, self.width, self.height, start)
        item["frames"] = torch.from_numpy(frames.astype(np.float32) / 255.0)
        cam = self.cams[(ci, spk)]
        if cam is None:
            item["cam"] = torch.zeros(length, 3)
            item["cam_valid"] = torch.tensor(False)
        else:
            item["cam"] = torch.from_numpy(cam[start : start + length].copy())
            item["cam_valid"] = torch.tensor(True)
        return item


def collate_triplets(items) -> dict:
    """:func:`~.dualtalk.collate_windows` for triplet items (frames are padded like motion)."""
    return collate_windows(items)
