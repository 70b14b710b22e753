"""Dyadic recordings -> a DualTalk-layout training corpus (``rsatalker make-dataset``;
README "Fine-tuning on your own recordings", docs/data.md §1 for the layout).

Three kinds of recording of a conversation between two people, speaker 1 and speaker 2:

* **two videos**, one per person (each with that person's microphone as its audio track,
  or ``audio1`` / ``audio2`` files);
* **one side-by-side video** and two crop boxes ``(x, y, w, h)`` in pixels, one around each
  person; the audio comes from ``audio1`` / ``audio2``, or from a stereo track whose left
  channel is speaker 1's microphone and right channel speaker 2's (a mono track mixes both
  voices and is refused: the corpus needs each speaker's own speech);
* **a rosbag2 recording** with two camera topics (``sensor_msgs/Image`` rgb8/bgr8/mono8 or
  ``CompressedImage`` jpeg/png) and two audio topics (``rsatalker/msg/AudioChunk``); the
  defaults are what ``record:=true`` records when both cameras are in the graph
  (:data:`DEFAULT_BAG_TOPICS`: the self camera and ``audio/self`` are speaker 1, the
  partner camera and ``audio/partner`` speaker 2). Header stamps (capture times) align the
  four streams; the corpus covers the time all four span.

Each person's face is tracked with :class:`~rsatalker_core.tracking.tracker.FaceTracker` on
the *loaded* head model (so the corpus's expressions are in that model's space, recorded
as ``expression_space`` in every npz), the audio is resampled to 16 kHz mono, and the
conversation is cut into clips of at most ``clip_seconds`` (equal parts). Written:

* ``<root>/<split>/<name>_<nn>_speaker{1,2}.wav``: 16-kHz float32 mono, ``T * 640`` samples;
* ``<root>/<split>/<name>_<nn>_speaker{1,2}.npz``: ``exp (T, 50)``, ``pose (T, 6)`` =
  ``[head | jaw]`` radians at 25 fps, plus ``eye_pose``, ``cam``, ``shape``, ``confidence``,
  ``valid`` (face tracked in that frame; other frames interpolated), ``expression_space``,
  ``head_model`` and ``fps`` (:mod:`rsatalker_core.tracking.offline`);
* ``<root>/relationships.csv``: ``clip,relationship`` for every clip, merged with the rows
  already there (:mod:`rsatalker_core.data.relationships`), so several recordings (and
  splits) build one corpus by running the command once per recording.

A clip where either face was tracked in fewer than ``min_face_fraction`` of its frames is
left out (and reported). The result is read by :class:`rsatalker_core.data.DualTalkDataset`
with ``data.root=<root>``, ``data.split=<split>`` and
``data.relationship_index=<root>/relationships.csv``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.config import FPS
from rsatalker_core.errors import BagError, DatasetError, MotionFileError, RsatalkerError
from rsatalker_core.io import session_topics as st

log = logging.getLogger(__name__)

__all__ = [
    "SAMPLE_RATE",
    "DEFAULT_BAG_TOPICS",
    "TrackedPair",
    "MakeDatasetResult",
    "parse_crop",
    "track_two_videos",
    "track_side_by_side",
    "track_bag",
    "write_clips",
    "clip_bounds",
]

#: Audio rate of the corpus, Hz (DualTalk's; 640 samples per 25-fps frame).
SAMPLE_RATE = 16000
_HOP = SAMPLE_RATE // FPS
#: Default bag topics: (camera of speaker 1, camera of speaker 2, audio of speaker 1, audio of speaker 2).
DEFAULT_BAG_TOPICS = (st.SELF_CAMERA.name, st.PARTNER_CAMERA.name, st.AUDIO_SELF.name, st.AUDIO_PARTNER.name)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

TrackerFactory = Callable[[], object]


@dataclass
class TrackedPair:
    """One tracked conversation, both speakers on one 25-fps clock.

    Attributes:
        arrays: ``[speaker 1, speaker 2]`` npz arrays of
            :func:`rsatalker_core.tracking.offline.tracked_arrays` (``exp``, ``pose``, ...).
        audio: ``[speaker 1, speaker 2]`` ``[S]`` float32 mono at :data:`SAMPLE_RATE`,
            sample 0 at frame 0.
    """

    arrays: List[Dict[str, np.ndarray]]
    audio: List[np.ndarray]

    @property
    def num_frames(self) -> int:
        """Frames both speakers' motion and audio cover, 25 fps."""
        return int(min(len(self.arrays[0]["exp"]), len(self.arrays[1]["exp"]),
                       len(self.audio[0]) // _HOP, len(self.audio[1]) // _HOP))


@dataclass
class MakeDatasetResult:
    """What :func:`write_clips` wrote.

    Attributes:
        clips: clip ids written (in ``<root>/<split>``).
        skipped: ``(clip id, reason)`` of the clips left out.
        num_frames: frames written per clip.
    """

    clips: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    num_frames: List[int] = field(default_factory=list)


def parse_crop(text: str) -> Tuple[int, int, int, int]:
    """``"x,y,w,h"`` (pixels) -> a tuple of 4 ints.

    Raises:
        DatasetError: not four integers, or a width/height < 1.
    """
    try:
        vals = tuple(int(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or vals[2] < 1 or vals[3] < 1 or vals[0] < 0 or vals[1] < 0:
        raise DatasetError(f"a crop box is 'x,y,w,h' in pixels (x, y >= 0, w, h >= 1), got {text!r}")
    return vals  # type: ignore[return-value]


# ---- audio ----------------------------------------------------------------------------------
def _audio_channels(path: str) -> int:
    """Channels of the first audio stream of ``path`` (0: none), from ffmpeg's stream line."""
    from rsatalker_core.io.video import ffmpeg_exe

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True)
    m = re.search(r"Audio:[^\n]*?\d+ Hz, ([^,\n]+)", proc.stderr)
    if not m:
        return 0
    layout = m.group(1).strip()
    if layout == "mono":
        return 1
    if layout.startswith("stereo"):
        return 2
    n = re.match(r"(\d+) channels", layout)
    return int(n.group(1)) if n else 2


def _read_channel(path: str, channel: int) -> np.ndarray:
    """Channel ``channel`` of the first audio stream of ``path`` at 16 kHz, float32."""
    from rsatalker_core.io.video import ffmpeg_exe

    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:a:0",
         "-af", f"pan=mono|c0=c{int(channel)}", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"],
        capture_output=True)
    if proc.returncode != 0:
        raise DatasetError(f"{path}: cannot decode audio channel {channel}: "
                           f"{proc.stderr.decode('utf-8', 'replace').strip()[-200:]}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def _read_audio(path: str, what: str) -> np.ndarray:
    """Mono 16-kHz float32 of an audio file or a video's audio track."""
    from rsatalker_core.io.video import has_audio_stream, read_audio_track

    if not os.path.isfile(path):
        raise DatasetError(f"{what}: no such file: {path}")
    if not has_audio_stream(path):
        raise DatasetError(f"{what}: {path} has no audio stream (give the speaker's audio as a separate file)")
    return read_audio_track(path, SAMPLE_RATE)


# ---- the three kinds of input ---------------------------------------------------------------
def _track(path: str, factory: TrackerFactory, crop=None, progress=None) -> Dict[str, np.ndarray]:
    from rsatalker_core.tracking.offline import track_video

    tracker = factory()
    try:
        return track_video(path, tracker, FPS, progress=progress, crop=crop)
    finally:
        tracker.close()


def track_two_videos(video1: str, video2: str, factory: TrackerFactory, audio1: Optional[str] = None,
                     audio2: Optional[str] = None, progress=None) -> TrackedPair:
    """Two videos, one per person, starting at the same moment.

    Args:
        video1, video2: speaker 1's and speaker 2's video.
        factory: makes a fresh :class:`~rsatalker_core.tracking.tracker.FaceTracker`.
        audio1, audio2: each speaker's audio (default: that speaker's video's audio track).
        progress: ``(label, frames done, frames total)`` callback.

    Raises:
        DatasetError: a missing file or a speaker without audio.
        TrackingError: a video that cannot be read.
    """
    for v in (video1, video2):
        if not os.path.isfile(v):
            raise DatasetError(f"no such video file: {v}")
    audio = [_read_audio(audio1 or video1, "speaker 1 audio"), _read_audio(audio2 or video2, "speaker 2 audio")]
    arrays = [_track(v, factory, progress=_label(progress, f"speaker {i + 1}"))
              for i, v in enumerate((video1, video2))]
    return TrackedPair(arrays, audio)


def track_side_by_side(video: str, crop1: Sequence[int], crop2: Sequence[int], factory: TrackerFactory,
                       audio1: Optional[str] = None, audio2: Optional[str] = None, progress=None) -> TrackedPair:
    """One video showing both people, ``crop1`` / ``crop2`` = ``(x, y, w, h)`` around each.

    Audio: ``audio1`` and ``audio2`` when given, else the video's stereo track (left =
    speaker 1, right = speaker 2).

    Raises:
        DatasetError: missing file, one of ``audio1``/``audio2`` without the other, or no
            per-speaker audio (a mono or missing track and no audio files).
        TrackingError: a crop box outside the frame, an unreadable video.
    """
    if not os.path.isfile(video):
        raise DatasetError(f"no such video file: {video}")
    if (audio1 is None) != (audio2 is None):
        raise DatasetError("give both speakers' audio files (--audio1 and --audio2) or neither")
    if audio1 is not None:
        audio = [_read_audio(audio1, "speaker 1 audio"), _read_audio(audio2, "speaker 2 audio")]
    else:
        ch = _audio_channels(video)
        if ch < 2:
            raise DatasetError(
                f"{video}: {'no audio track' if ch == 0 else 'a mono audio track mixes both voices'}; "
                "give each speaker's audio (--audio1, --audio2) or a stereo track (left = speaker 1, "
                "right = speaker 2)")
        audio = [_read_channel(video, 0), _read_channel(video, 1)]
    arrays = [_track(video, factory, crop=tuple(c), progress=_label(progress, f"speaker {i + 1}"))
              for i, c in enumerate((crop1, crop2))]
    return TrackedPair(arrays, audio)


def _label(progress, label):
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)


def _topic_match(topic: str, name: str) -> bool:
    t, n = topic.strip("/"), name.strip("/")
    return t == n or t.endswith("/" + n)


def _stamp_s(msg) -> float:
    return int(msg.header.stamp.sec) + 1e-9 * int(msg.header.stamp.nanosec)


def _camera_rgb(msg) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, mono8) or ``CompressedImage`` (jpeg, png) -> RGB uint8.

    Raises:
        BagError: another encoding or undecodable data.
    """
    if hasattr(msg, "format"):
        import cv2

        buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if bgr is None:
            raise BagError(f"CompressedImage ({msg.format or 'no format'}) cannot be decoded")
        return np.ascontiguousarray(bgr[..., ::-1])
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    ch = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(str(msg.encoding))
    if ch is None:
        raise BagError(f"camera image encoding '{msg.encoding}' is not supported (rgb8, bgr8, mono8, or jpeg/png)")
    if h == 0 or w == 0 or step < ch * w or data.size != h * step:
        raise BagError(f"camera image {w}x{h} {msg.encoding} with step {step} holds {data.size} bytes")
    img = data.reshape(h, step)[:, : ch * w].reshape(h, w, ch)
    if ch == 1:
        img = np.repeat(img, 3, axis=2)
    elif msg.encoding == "bgr8":
        img = img[..., ::-1]
    return np.ascontiguousarray(img)


def track_bag(path: str, factory: TrackerFactory, topics: Sequence[str] = DEFAULT_BAG_TOPICS,
              progress=None) -> TrackedPair:
    """A rosbag2 recording with two camera topics and two audio topics.

    Args:
        path: bag directory (``metadata.yaml``), ``.mcap`` or ``.db3``.
        topics: ``(camera 1, camera 2, audio 1, audio 2)`` names, matched in any namespace
            (a camera name also matches its ``/compressed`` topic).

    Returns:
        Both speakers from the latest first header stamp of the four streams to the earliest
        last one (audio chunks placed by their stamps; gaps are silence).

    Raises:
        BagError: a missing or unreadable bag, a topic missing from it, or streams that do
            not overlap in time.
    """
    from pathlib import Path

    from rosbags.highlevel import AnyReader

    from rsatalker_core.io.bag_types import session_typestore
    from rsatalker_core.speech.audio import resample
    from rsatalker_core.tracking.offline import track_timed_frames

    if len(topics) != 4:
        raise BagError(f"need 4 bag topics (camera 1, camera 2, audio 1, audio 2), got {list(topics)}")
    p = Path(path)
    if not p.exists():
        raise BagError(f"{path}: no such bag (file or directory)")
    try:
        reader = AnyReader([p], default_typestore=session_typestore())
        reader.open()
    except RsatalkerError:
        raise
    except Exception as exc:  # rosbags' AnyReaderError and friends
        raise BagError(f"{path}: not a readable rosbag2 recording ({exc})") from exc
    try:
        cams, auds = [], []
        for name in topics[:2]:
            conns = [c for c in reader.connections if c.msgtype in (
                "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage") and (
                _topic_match(c.topic, name) or _topic_match(c.topic, name + "/compressed"))]
            if not conns:
                raise BagError(f"{path}: no camera topic '{name}' (Image or CompressedImage); topics: "
                               f"{', '.join(sorted(c.topic for c in reader.connections))}")
            cams.append(conns[:1])
        for name in topics[2:]:
            conns = [c for c in reader.connections
                     if c.msgtype == "rsatalker/msg/AudioChunk" and _topic_match(c.topic, name)]
            if not conns:
                raise BagError(f"{path}: no audio topic '{name}' (rsatalker/msg/AudioChunk)")
            auds.append(conns[:1])
        # Pass 1: audio chunks and the cameras' capture times.
        chunks: List[List[Tuple[float, np.ndarray]]] = [[], []]
        for i, conns in enumerate(auds):
            for conn, _, raw in reader.messages(connections=conns):
                m = reader.deserialize(raw, conn.msgtype)
                x = np.asarray(m.samples, np.float32)
                if int(m.sample_rate) != SAMPLE_RATE and x.size:
                    x = np.asarray(resample(x, int(m.sample_rate), SAMPLE_RATE), np.float32)
                chunks[i].append((_stamp_s(m), x))
        stamps = [[_stamp_s(reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages(connections=conns)]
                  for conns in cams]
        for i in range(2):
            if not stamps[i]:
                raise BagError(f"{path}: camera topic '{topics[i]}' holds no messages")
            if not chunks[i]:
                raise BagError(f"{path}: audio topic '{topics[2 + i]}' holds no messages")
        start = max(min(s) for s in stamps + [[c[0] for c in ch] for ch in chunks])
        end = min([max(s) + 1.0 / FPS for s in stamps]
                  + [max(t + len(x) / SAMPLE_RATE for t, x in ch) for ch in chunks])
        T = int(np.floor((end - start) * FPS + 1e-6))
        if T < 1:
            raise BagError(f"{path}: the two cameras and two audio streams do not overlap in time")
        audio = []
        for ch in chunks:
            buf = np.zeros(T * _HOP, np.float32)
            for t, x in ch:
                a = int(round((t - start) * SAMPLE_RATE))
                lo, hi = max(a, 0), min(a + len(x), len(buf))
                if hi > lo:
                    buf[lo:hi] = x[lo - a : hi - a]
            audio.append(buf)

        def frames(conns):
            for conn, _, raw in reader.messages(connections=conns):
                m = reader.deserialize(raw, conn.msgtype)
                yield _stamp_s(m), _camera_rgb(m)

        arrays = []
        for i, conns in enumerate(cams):
            tracker = factory()
            try:
                arrays.append(track_timed_frames(frames(conns), tracker, start, T, FPS,
                                                 progress=_label(progress, f"speaker {i + 1}")))
            finally:
                tracker.close()
    finally:
        reader.close()
    return TrackedPair(arrays, audio)


# ---- writing --------------------------------------------------------------------------------
def clip_bounds(num_frames: int, clip_frames: int, min_frames: int = FPS) -> List[Tuple[int, int]]:
    """Cut ``num_frames`` into ``ceil(num_frames / clip_frames)`` near-equal clips
    ``[(start, end), ...]`` (``clip_frames <= 0``: one clip); none when shorter than
    ``min_frames``."""
    if num_frames < max(min_frames, 1):
        return []
    if clip_frames <= 0:
        return [(0, num_frames)]
    n = int(np.ceil(num_frames / clip_frames))
    edges = np.round(np.linspace(0, num_frames, n + 1)).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def write_clips(pair: TrackedPair, root: str, name: str, relationship: str, split: str = "train",
                clip_seconds: float = 20.0, min_face_fraction: float = 0.8,
                extra: Optional[Dict[str, np.ndarray]] = None, overwrite: bool = False) -> MakeDatasetResult:
    """Write a tracked conversation as DualTalk-layout clips (module docstring).

    Args:
        pair: both speakers' motion and audio.
        root: corpus root (created; earlier clips and labels are kept).
        name: recording id, the clips' prefix (letters, digits, ``_ . -``; no ``_speaker``).
        relationship: the two people's relationship (a name or the axis form).
        split: sub-directory: ``train``, ``test``, ``ood`` or ``""`` (root itself).
        clip_seconds: longest clip, s (<= 30 = ``motion.max_frames``; 0: one clip).
        min_face_fraction: clips where a face was tracked in fewer frames are left out.
        extra: more npz arrays for every file (e.g. ``expression_space``, ``head_model``).
        overwrite: replace clips of the same name (else refused).

    Raises:
        DatasetError: a bad name, split or clip length, clips that exist already, or no
            clip long and well-tracked enough to write.
        RelationshipError: an unknown relationship.
    """
    import soundfile as sf

    from rsatalker_core.data.dualtalk import SPLITS
    from rsatalker_core.data.relationships import load_relationship_index, write_relationship_index
    from rsatalker_core.io.motion_npz import dualtalk_to_motion, save_motion_npz
    from rsatalker_core.relationship import Relationship

    rel = Relationship.parse(relationship)
    if not _NAME.match(name) or "_speaker" in name:
        raise DatasetError(f"recording name {name!r}: use letters, digits, '_', '.', '-' (and no '_speaker')")
    if split not in SPLITS + ("",):
        raise DatasetError(f"split must be one of {', '.join(SPLITS)} or '', got {split!r}")
    if not 0 <= clip_seconds <= 30:
        raise DatasetError(f"clip length must be in 0..30 s (motion.max_frames = 30 s), got {clip_seconds}")
    T = pair.num_frames
    bounds = clip_bounds(T, int(round(clip_seconds * FPS)))
    if not bounds:
        raise DatasetError(f"{name}: the recording spans {T} frames ({T / FPS:.2f} s), under 1 s")
    folder = os.path.join(root, split)
    ids = [f"{name}_{i:02d}" for i in range(len(bounds))]
    if not overwrite:
        exists = [c for c in ids if os.path.exists(os.path.join(folder, f"{c}_speaker1.npz"))]
        if exists:
            raise DatasetError(f"{folder}: clips {', '.join(exists)} exist already (overwrite to replace)")
    os.makedirs(folder, exist_ok=True)
    res = MakeDatasetResult()
    for cid, (a, b) in zip(ids, bounds):
        face = [float(np.mean(arr["valid"][a:b])) for arr in pair.arrays]
        if min(face) < min_face_fraction:
            res.skipped.append((cid, f"face tracked in {face[0]:.0%} / {face[1]:.0%} of frames "
                                     f"(speaker 1 / 2), under {min_face_fraction:.0%}"))
            continue
        try:
            motions = [dualtalk_to_motion(arr["exp"][a:b], arr["pose"][a:b]) for arr in pair.arrays]
            for spk, (arr, motion) in enumerate(zip(pair.arrays, motions), start=1):
                base = os.path.join(folder, f"{cid}_speaker{spk}")
                more = {k: v[a:b] for k, v in arr.items()
                        if k not in ("exp", "pose") and getattr(v, "ndim", 0) >= 1 and len(v) == len(arr["exp"])}
                more.update({k: v for k, v in arr.items() if getattr(v, "ndim", 1) == 0})
                more.update(extra or {})
                save_motion_npz(base + ".npz", motion, more)
                sf.write(base + ".wav", pair.audio[spk - 1][a * _HOP : b * _HOP].astype(np.float32),
                         SAMPLE_RATE, subtype="FLOAT")
        except MotionFileError as exc:
            res.skipped.append((cid, f"tracked motion outside the FLAME ranges ({exc})"))
            for spk in (1, 2):
                for ext in ("npz", "wav"):
                    f = os.path.join(folder, f"{cid}_speaker{spk}.{ext}")
                    if os.path.exists(f):
                        os.remove(f)
            continue
        res.clips.append(cid)
        res.num_frames.append(b - a)
    for cid, why in res.skipped:
        log.warning("%s left out: %s", cid, why)
    if not res.clips:
        raise DatasetError(f"{name}: no clip written ({'; '.join(w for _, w in res.skipped)})")
    index_path = os.path.join(root, "relationships.csv")
    labels = {}
    if os.path.isfile(index_path):
        old = load_relationship_index(index_path)
        labels = {c: old.get(c) for c in old}
    labels.update({c: rel for c in res.clips})
    write_relationship_index(index_path, labels)
    return res
