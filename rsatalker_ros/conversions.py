"""Every conversion between rsatalker's ROS messages and numpy arrays (cv_bridge style).

All functions validate what they convert and raise :class:`ConversionError` (naming the
field and value) on NaN/Inf, wrong lengths, wrong encodings or bad sample rates, so nodes
can log and drop a bad message with one ``except ConversionError``.

Field types as rclpy delivers them (docs/environment.md §5): an unbounded ``float32[]`` arrives as
``array.array('f')``, a fixed ``float32[3]`` as a numpy array, ``uint8[]`` as
``array.array('B')``. The functions accept any of these, lists and numpy arrays.

Motion layout (docs/data.md §4, :mod:`rsatalker_core.config`): ``[exp 0:50 | jaw 50:53 |
head 53:56]``, rotations as axis-angle vectors in radians.

Time stamps are integers in nanoseconds (``stamp_ns``) on the numpy side and
``builtin_interfaces/Time`` on the message side.
"""

from __future__ import annotations

import array
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from rsatalker.msg import AudioChunk, FlameParams
from rsatalker.msg import Relationship as RelationshipMsg
from rsatalker.msg import TrainingProgress
from rsatalker_core.config import EXP_DIM, EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM
from rsatalker_core.errors import AudioError, RelationshipError, RsatalkerError
from rsatalker_core.io.motion_npz import MAX_ROTATION_RAD, motion_range_problem
from rsatalker_core.speech.audio import check_amplitude
from rsatalker_core.relationship import Relationship

__all__ = [
    "ConversionError",
    "time_to_ns",
    "ns_to_time",
    "make_header",
    "flame_params_to_array",
    "array_to_flame_params",
    "flame_params_relationship",
    "audio_chunk_to_array",
    "pcm16_to_array",
    "array_to_audio_chunk",
    "image_to_array",
    "array_to_image",
    "array_to_compressed_image",
    "camera_info_msg",
    "transform_stamped",
    "relationship_msg_to_relationship",
    "relationship_to_msg",
    "training_progress_to_msg",
    "training_progress_to_dict",
    "TRAINING_STATES",
    "AUDIO_ROLES",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
]

#: Roles an :class:`AudioChunk` may carry (``AudioChunk.ROLE_SELF`` / ``ROLE_PARTNER``).
AUDIO_ROLES = ("self", "partner")
#: Sample rates accepted on audio messages, Hz (telephone band to studio rates).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192000
_MAX_UINT32 = 2**32 - 1
#: Longest accepted audio chunk, seconds (publishers send 10-100 ms; a longer one is a
#: broken source and would stall the motion node's inference).
MAX_CHUNK_SECONDS = 10.0
_IMAGE_ENCODINGS = ("rgb8", "bgr8")
#: States a :class:`TrainingProgress` may carry (its ``STATE_*`` constants).
TRAINING_STATES = ("idle", "running", "finished", "cancelled", "failed")


class ConversionError(RsatalkerError, ValueError):
    """A message or array cannot be converted: bad length, NaN/Inf, encoding or value."""


# --------------------------------------------------------------------------- time


def time_to_ns(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds since the clock's epoch."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_time(stamp_ns: int) -> Time:
    """Integer nanoseconds -> ``builtin_interfaces/Time``.

    Raises:
        ConversionError: negative or beyond the int32 seconds range.
    """
    stamp_ns = int(stamp_ns)
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    if stamp_ns < 0 or sec > 2**31 - 1:
        raise ConversionError(f"time stamp {stamp_ns} ns is outside [0, 2^31) s")
    return Time(sec=sec, nanosec=nanosec)


def make_header(stamp_ns: Optional[int] = None, frame_id: str = "") -> Header:
    """``std_msgs/Header`` with the given stamp (ns; ``None`` leaves it zero) and frame id."""
    header = Header(frame_id=str(frame_id))
    if stamp_ns is not None:
        header.stamp = ns_to_time(stamp_ns)
    return header


# --------------------------------------------------------------------------- helpers


def _vector(values, name: str, length: Optional[int] = None) -> np.ndarray:
    """Finite float32 ``[N]`` from an array.array / numpy array / sequence."""
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"{name}: not a numeric sequence ({exc})") from exc
    if arr.ndim != 1:
        raise ConversionError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ConversionError(f"{name}: expected {length} values, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ConversionError(f"{name}: holds {bad} NaN/Inf value(s)")
    return arr


def _float32_array(values: np.ndarray) -> array.array:
    """numpy float32 ``[N]`` -> ``array.array('f')`` (the type rclpy stores float32[] in)."""
    out = array.array("f")
    out.frombytes(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return out


# --------------------------------------------------------------------------- FLAME


def flame_params_to_array(msg: FlameParams) -> np.ndarray:
    """``rsatalker/FlameParams`` -> motion ``[56]`` float32 ``[exp 50 | jaw 3 | head 3]``.

    ``eye_pose`` is not part of the model's motion vector and is ignored here.

    Raises:
        ConversionError: ``expression`` does not hold exactly 50 values, a pose does not
            hold 3, any value is NaN/Inf, or a value is outside the physical FLAME ranges
            (:func:`rsatalker_core.io.motion_npz.check_motion_ranges`: |expression| <= 100,
            |axis-angle component| <= pi rad).
    """
    motion = np.empty(MOTION_DIM, dtype=np.float32)
    motion[EXP_SLICE] = _vector(msg.expression, "FlameParams.expression", EXP_DIM)
    motion[JAW_SLICE] = _vector(msg.jaw_pose, "FlameParams.jaw_pose", 3)
    motion[HEAD_SLICE] = _vector(msg.head_pose, "FlameParams.head_pose", 3)
    _check_ranges(motion, "FlameParams")
    return motion


def _check_ranges(motion: np.ndarray, name: str) -> None:
    problem = motion_range_problem(motion)
    if problem is not None:
        raise ConversionError(f"{name} {problem}")


def array_to_flame_params(
    motion: np.ndarray,  # [56]
    stamp_ns: Optional[int] = None,
    frame_id: str = "",
    frame_index: int = 0,
    relationship: str = "",
    source_stamp_ns: Optional[int] = None,
    eye_pose: Optional[np.ndarray] = None,  # [6]
) -> FlameParams:
    """Motion ``[56]`` ``[exp | jaw | head]`` (radians) -> ``rsatalker/FlameParams``.

    Args:
        motion: ``[56]`` float motion vector.
        stamp_ns: header stamp, ns: the frame's media time (see FlameParams.msg).
        frame_id: header frame id (the avatar's name).
        frame_index: frame number since the stream started (25 fps), ``[0, 2^32)``.
        relationship: canonical relationship name the frame was generated under.
        source_stamp_ns: stamp of the self-audio chunk that completed the frame, ns.
        eye_pose: ``[6]`` left/right eye axis-angle, radians; zeros when omitted.

    Raises:
        ConversionError: wrong shape, NaN/Inf, values outside the physical FLAME ranges
            (never published), or an out-of-range index or stamp.
    """
    m = _vector(motion, "motion", MOTION_DIM)
    _check_ranges(m, "motion")
    if not 0 <= int(frame_index) <= _MAX_UINT32:
        raise ConversionError(f"frame_index {frame_index} is outside [0, 2^32)")
    msg = FlameParams()
    msg.header = make_header(stamp_ns, frame_id)
    msg.expression = _float32_array(m[EXP_SLICE])
    msg.jaw_pose = m[JAW_SLICE].copy()
    msg.head_pose = m[HEAD_SLICE].copy()
    if eye_pose is not None:
        eye = _vector(eye_pose, "eye_pose", 6)
        if np.abs(eye).max() > MAX_ROTATION_RAD:
            raise ConversionError(f"eye_pose has rotations beyond ±pi rad (largest {float(np.abs(eye).max()):.3g})")
        msg.eye_pose = eye
    msg.frame_index = int(frame_index)
    msg.relationship = str(relationship)
    if source_stamp_ns is not None:
        msg.source_stamp = ns_to_time(source_stamp_ns)
    return msg


def flame_params_relationship(msg: FlameParams) -> Optional[Relationship]:
    """The relationship a ``rsatalker/FlameParams`` frame was generated under, or ``None``
    when its ``relationship`` field is empty (unknown, e.g. tracked motion).

    Raises:
        ConversionError: a non-empty ``relationship`` that is not a known relationship.
    """
    name = str(msg.relationship).strip()
    if not name:
        return None
    try:
        return Relationship.parse(name)
    except RelationshipError as exc:
        raise ConversionError(f"FlameParams.relationship: {exc}") from exc


# --------------------------------------------------------------------------- audio


def _check_sample_rate(sample_rate, where: str) -> int:
    try:
        sr = int(sample_rate)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"{where}: sample_rate {sample_rate!r} is not an integer") from exc
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise ConversionError(
            f"{where}: sample_rate {sample_rate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz"
        )
    return sr


def audio_chunk_to_array(msg: AudioChunk) -> Tuple[np.ndarray, int]:
    """``rsatalker/AudioChunk`` -> ``(samples [S] float32, sample_rate Hz)``.

    Raises:
        ConversionError: no samples, NaN/Inf samples or samples beyond ``±MAX_AMPLITUDE``
            (1e3; :func:`rsatalker_core.speech.audio.check_amplitude`), a chunk longer than
            ``MAX_CHUNK_SECONDS`` (10 s), or a sample rate outside
            ``[MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]``.
    """
    sr = _check_sample_rate(msg.sample_rate, "AudioChunk")
    samples = _vector(msg.samples, "AudioChunk.samples")
    _check_audio(samples, sr, "AudioChunk.samples")
    return samples, sr


def _check_audio(samples: np.ndarray, sr: int, name: str) -> None:
    if samples.size == 0:
        raise ConversionError(f"{name} is empty")
    if samples.size > MAX_CHUNK_SECONDS * sr:
        raise ConversionError(f"{name}: {samples.size / sr:.1f} s in one chunk (at most {MAX_CHUNK_SECONDS:g} s)")
    try:
        check_amplitude(samples, name)
    except AudioError as exc:
        raise ConversionError(str(exc)) from exc


def pcm16_to_array(data, channels: int = 1) -> np.ndarray:
    """Interleaved signed 16-bit little-endian PCM bytes (``audio_common_msgs/AudioData.data``,
    ``std_msgs/UInt8MultiArray.data``) -> mono ``[S]`` float32 in [-1, 1) (channels averaged).

    Raises:
        ConversionError: no bytes, an odd byte count, ``channels < 1``, or a byte count that
            is not a whole number of frames of ``channels`` samples.
    """
    if int(channels) < 1:
        raise ConversionError(f"PCM16 audio needs channels >= 1, got {channels}")
    raw = bytes(data)
    if not raw or len(raw) % (2 * int(channels)):
        raise ConversionError(f"PCM16 audio: {len(raw)} bytes is not a whole number of "
                              f"{int(channels)}-channel 16-bit frames")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return x.reshape(-1, int(channels)).mean(axis=1).astype(np.float32)

def array_to_audio_chunk(
    samples: np.ndarray,  # [S]
    sample_rate: int,
    stamp_ns: Optional[int] = None,
    role: str = "self",
    frame_id: str = "",
) -> AudioChunk:
    """Mono samples ``[S]`` in [-1, 1] -> ``rsatalker/AudioChunk``.

    Args:
        samples: ``[S]`` float mono samples (S >= 1).
        sample_rate: Hz.
        stamp_ns: capture time of the first sample, ns.
        role: ``"self"`` or ``"partner"``.
        frame_id: source name (microphone or file).

    Raises:
        ConversionError: not 1-D, empty, NaN/Inf or beyond ``±MAX_AMPLITUDE``, longer than
            ``MAX_CHUNK_SECONDS``, bad sample rate or unknown role.
    """
    sr = _check_sample_rate(sample_rate, "audio")
    x = _vector(samples, "audio samples")
    _check_audio(x, sr, "audio samples")
    if role not in AUDIO_ROLES:
        raise ConversionError(f"audio role '{role}' is not one of {', '.join(AUDIO_ROLES)}")
    msg = AudioChunk()
    msg.header = make_header(stamp_ns, frame_id)
    msg.role = role
    msg.sample_rate = sr
    msg.samples = _float32_array(x)
    return msg


# --------------------------------------------------------------------------- images


def image_to_array(msg: Image) -> np.ndarray:
    """``sensor_msgs/Image`` (``rgb8`` or ``bgr8``) -> RGB ``[H, W, 3]`` uint8.

    Row padding (``step > 3 * width``) is removed; ``bgr8`` is reordered to RGB.

    Raises:
        ConversionError: another encoding, big-endian flag on a multi-byte encoding, a
            ``step`` smaller than a row, or a ``data`` length that does not match.
    """
    if msg.encoding not in _IMAGE_ENCODINGS:
        raise ConversionError(
            f"Image encoding '{msg.encoding}' is not supported (use {' or '.join(_IMAGE_ENCODINGS)})"
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ConversionError(f"Image is empty ({w}x{h})")
    if step < 3 * w:
        raise ConversionError(f"Image step {step} is smaller than a row of {w} rgb pixels ({3 * w})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * h:
        raise ConversionError(f"Image data holds {data.size} bytes, expected step*height = {step * h}")
    img = data.reshape(h, step)[:, : 3 * w].reshape(h, w, 3)
    if msg.encoding == "bgr8":
        img = img[..., ::-1]
    return np.ascontiguousarray(img)


def array_to_image(
    image: np.ndarray,  # [H, W, 3] uint8 RGB
    stamp_ns: Optional[int] = None,
    frame_id: str = "",
    encoding: str = "rgb8",
) -> Image:
    """RGB ``[H, W, 3]`` uint8 -> ``sensor_msgs/Image`` (``rgb8``, or ``bgr8`` reordered).

    Raises:
        ConversionError: not ``[H, W, 3]`` uint8, empty, or an unsupported encoding.
    """
    if encoding not in _IMAGE_ENCODINGS:
        raise ConversionError(f"encoding '{encoding}' is not supported (use {' or '.join(_IMAGE_ENCODINGS)})")
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ConversionError(f"image must be uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ConversionError(f"image must be [H, W, 3], got shape {img.shape}")
    if encoding == "bgr8":
        img = img[..., ::-1]
    h, w = img.shape[:2]
    msg = Image()
    msg.header = make_header(stamp_ns, frame_id)
    msg.height, msg.width = h, w
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = 3 * w
    msg.data = np.ascontiguousarray(img).tobytes()
    return msg


def camera_image_to_array(msg) -> np.ndarray:
    """A camera frame -> RGB ``[H, W, 3]`` uint8 (cv_bridge-style).

    ``sensor_msgs/Image`` in ``rgb8``, ``bgr8`` or ``mono8`` (grey replicated to three
    channels; row padding removed), or ``sensor_msgs/CompressedImage`` in ``jpeg`` / ``png``
    (``format`` as image_transport writes it, e.g. ``"rgb8; jpeg compressed bgr8"``).

    Raises:
        ConversionError: another encoding or format, inconsistent sizes, undecodable data.
    """
    if hasattr(msg, "format"):  # CompressedImage
        fmt = str(msg.format).lower()
        if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
            raise ConversionError(f"CompressedImage format '{msg.format}' is not supported (use jpeg or png)")
        import cv2

        buf = np.frombuffer(msg.data, dtype=np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if bgr is None:
            raise ConversionError(f"CompressedImage ({msg.format or 'no format'}, {buf.size} bytes) cannot be decoded")
        return np.ascontiguousarray(bgr[..., ::-1])
    if msg.encoding != "mono8":
        return image_to_array(msg)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0 or step < w:
        raise ConversionError(f"mono8 Image {w}x{h} with step {step} is empty or shorter than a row")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * h:
        raise ConversionError(f"Image data holds {data.size} bytes, expected step*height = {step * h}")
    grey = data.reshape(h, step)[:, :w]
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))


def camera_info_to_k(msg) -> Optional[np.ndarray]:
    """``sensor_msgs/CameraInfo`` -> ``K [3, 3]`` float64 pixels, or None when uncalibrated
    (``k[0] == 0``, as camera drivers publish without calibration)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        return None
    return k


def array_to_compressed_image(
    image: np.ndarray,  # [H, W, 3] uint8 RGB
    stamp_ns: Optional[int] = None,
    frame_id: str = "",
    quality: int = 90,
):
    """RGB ``[H, W, 3]`` uint8 -> ``sensor_msgs/CompressedImage`` (JPEG through OpenCV), with
    ``format`` ``"rgb8; jpeg compressed bgr8"`` as image_transport's compressed transport
    writes it, so ``image_transport republish``, rqt, foxglove and web_video_server decode it.

    Args:
        quality: JPEG quality, 1-100 (OpenCV's IMWRITE_JPEG_QUALITY).

    Raises:
        ConversionError: not ``[H, W, 3]`` uint8, a quality outside [1, 100], or an encoder failure.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape[:2]:
        raise ConversionError(f"image must be [H, W, 3] uint8, got {img.dtype} {img.shape}")
    if not 1 <= int(quality) <= 100:
        raise ConversionError(f"JPEG quality must be in [1, 100], got {quality}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ConversionError(f"JPEG encoding of a {img.shape} image failed")
    msg = CompressedImage()
    msg.header = make_header(stamp_ns, frame_id)
    msg.format = "rgb8; jpeg compressed bgr8"
    msg.data = buf.tobytes()
    return msg


def camera_info_msg(
    K: np.ndarray,  # [3, 3]
    width: int,
    height: int,
    stamp_ns: Optional[int] = None,
    frame_id: str = "",
):
    """Pinhole intrinsics -> ``sensor_msgs/CameraInfo``: ``k = K``, ``p = [K | 0]`` (a
    monocular camera), ``r = I``, ``plumb_bob`` with zero distortion ``d = [0] * 5``, no
    binning or ROI. ``frame_id`` is the camera's *optical* frame (REP 103: z forward, x
    right, y down).

    Args:
        K: ``[3, 3]`` pixels (``u = fx x / z + cx``; :mod:`rsatalker_core.render.camera`).
        width, height: image size, pixels.

    Raises:
        ConversionError: ``K`` not a finite ``[3, 3]`` with positive focal lengths, or a
            non-positive size.
    """
    from sensor_msgs.msg import CameraInfo

    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ConversionError(f"K must be a finite [3, 3] with positive focal lengths, got {k.tolist()}")
    if int(width) <= 0 or int(height) <= 0:
        raise ConversionError(f"image size must be positive, got {width}x{height}")
    msg = CameraInfo()
    msg.header = make_header(stamp_ns, frame_id)
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = k.reshape(9).tolist()
    msg.r = np.eye(3).reshape(9).tolist()
    msg.p = np.concatenate([k, np.zeros((3, 1))], axis=1).reshape(12).tolist()
    return msg


# --------------------------------------------------------------------------- transforms


def transform_stamped(
    parent: str,
    child: str,
    translation: Sequence[float],  # [3] metres
    quaternion: Sequence[float],  # [4] (x, y, z, w)
    stamp_ns: Optional[int] = None,
):
    """``geometry_msgs/TransformStamped`` of frame ``child`` in frame ``parent``.

    Raises:
        ConversionError: empty or equal frame ids, a translation that is not a finite ``[3]``,
            or a quaternion that is not a finite non-zero ``[4]`` (it is normalised).
    """
    from geometry_msgs.msg import TransformStamped

    if not parent or not child or parent.strip("/") == child.strip("/"):
        raise ConversionError(f"TF frames must be non-empty and different, got '{parent}' -> '{child}'")
    t = _vector(translation, "translation", 3).astype(np.float64)
    q = _vector(quaternion, "quaternion", 4).astype(np.float64)
    n = float(np.linalg.norm(q))
    if n < 1e-9:
        raise ConversionError("quaternion is zero")
    q = q / n
    msg = TransformStamped()
    msg.header = make_header(stamp_ns, parent)
    msg.child_frame_id = child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in t)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


# --------------------------------------------------------------------------- relationship


def relationship_msg_to_relationship(msg: RelationshipMsg) -> Relationship:
    """``rsatalker/Relationship`` -> :class:`rsatalker_core.relationship.Relationship`.

    A non-empty ``name`` decides (canonical name or axis form); otherwise the
    ``blood``/``equal`` flags do (see Relationship.msg).

    Raises:
        ConversionError: ``name`` is not a known relationship.
    """
    name = msg.name.strip()
    if not name:
        return Relationship(blood=bool(msg.blood), equal=bool(msg.equal))
    try:
        return Relationship.parse(name)
    except RelationshipError as exc:
        raise ConversionError(f"Relationship.name: {exc}") from exc


def relationship_to_msg(
    rel: Union[str, Relationship], stamp_ns: Optional[int] = None
) -> RelationshipMsg:
    """A relationship (name, axis form or :class:`Relationship`) -> ``rsatalker/Relationship``
    with the canonical name and both flags filled.

    Raises:
        ConversionError: unknown relationship.
    """
    try:
        parsed = Relationship.parse(rel)
    except RelationshipError as exc:
        raise ConversionError(str(exc)) from exc
    msg = RelationshipMsg()
    msg.header = make_header(stamp_ns)
    msg.name = parsed.name
    msg.blood = parsed.blood
    msg.equal = parsed.equal
    return msg


# --------------------------------------------------------------------------- training


def training_progress_to_msg(
    stage: int,
    step: int,
    max_steps: int,
    state: str,
    loss: float = float("nan"),
    eta_s: float = float("nan"),
    checkpoint: str = "",
    final_weights: str = "",
    message: str = "",
    stamp_ns: Optional[int] = None,
) -> TrainingProgress:
    """A training run's progress -> ``rsatalker/TrainingProgress``.

    Args:
        stage: training stage number (1 motion generator, 2 renderer, 3 joint; any value
            in [0, 255] is carried, so a refused request can be reported).
        step, max_steps: optimiser steps done and the run's target, in [0, 2^32).
        state: one of :data:`TRAINING_STATES`.
        loss: the latest step's training loss; NaN (the default) while none exists.
        eta_s: estimated seconds to ``max_steps``; NaN while unknown. Never negative.
        checkpoint, final_weights: file paths ('' when there is none).
        message: why a run failed ('' otherwise).
        stamp_ns: header stamp, ns (``None`` leaves it zero).

    Raises:
        ConversionError: an unknown state, an out-of-range integer, an infinite loss or
            a negative / infinite ETA.
    """
    if state not in TRAINING_STATES:
        raise ConversionError(f"TrainingProgress.state: '{state}' is not one of {', '.join(TRAINING_STATES)}")
    if not 0 <= int(stage) <= 255:
        raise ConversionError(f"TrainingProgress.stage: {stage} is outside [0, 255]")
    for name, v in (("step", step), ("max_steps", max_steps)):
        if not 0 <= int(v) <= _MAX_UINT32:
            raise ConversionError(f"TrainingProgress.{name}: {v} is outside [0, 2^32)")
    loss, eta_s = float(loss), float(eta_s)
    if np.isinf(loss):
        raise ConversionError(f"TrainingProgress.loss: {loss} (NaN stands for 'no loss yet'; Inf is refused)")
    if np.isinf(eta_s) or eta_s < 0:
        raise ConversionError(f"TrainingProgress.eta_s: {eta_s} s (must be >= 0, or NaN when unknown)")
    msg = TrainingProgress()
    msg.header = make_header(stamp_ns)
    msg.stage = int(stage)
    msg.step = int(step)
    msg.max_steps = int(max_steps)
    msg.loss = loss
    msg.eta_s = eta_s
    msg.state = state
    msg.checkpoint = str(checkpoint)
    msg.final_weights = str(final_weights)
    msg.message = str(message)
    return msg


def training_progress_to_dict(msg: TrainingProgress) -> dict:
    """``rsatalker/TrainingProgress`` -> ``{"stage", "step", "max_steps", "loss", "eta_s",
    "state", "checkpoint", "final_weights", "message", "stamp_ns"}`` (loss / eta_s as
    floats, NaN when unknown).

    Raises:
        ConversionError: an unknown ``state``.
    """
    if msg.state not in TRAINING_STATES:
        raise ConversionError(f"TrainingProgress.state: '{msg.state}' is not one of {', '.join(TRAINING_STATES)}")
    return {
        "stage": int(msg.stage),
        "step": int(msg.step),
        "max_steps": int(msg.max_steps),
        "loss": float(msg.loss),
        "eta_s": float(msg.eta_s),
        "state": msg.state,
        "checkpoint": msg.checkpoint,
        "final_weights": msg.final_weights,
        "message": msg.message,
        "stamp_ns": time_to_ns(msg.header.stamp),
    }


def _check_constants() -> None:
    """The message constants and the core's names must agree (checked at import)."""
    consts: Sequence[str] = (
        RelationshipMsg.SIBLINGS,
        RelationshipMsg.PARENT_CHILD,
        RelationshipMsg.COUPLE,
        RelationshipMsg.SUPERIOR_SUBORDINATE,
    )
    states = (TrainingProgress.STATE_IDLE, TrainingProgress.STATE_RUNNING, TrainingProgress.STATE_FINISHED,
              TrainingProgress.STATE_CANCELLED, TrainingProgress.STATE_FAILED)
    if (list(consts) != Relationship.names() or (AudioChunk.ROLE_SELF, AudioChunk.ROLE_PARTNER) != AUDIO_ROLES
            or states != TRAINING_STATES):
        raise ImportError("rsatalker messages are out of date: rebuild them (scripts/build_msgs.sh)")


_check_constants()
