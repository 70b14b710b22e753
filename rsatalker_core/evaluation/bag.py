"""Evaluating a recorded ROS 2 session (rosbag2, MCAP or sqlite3): timing, drops, social
relationship switches, motion metrics, and the session's video.

A session is what the recorder node (``bag_path``) or ``ros2 bag record`` writes from the
rsatalker graph (topics in :data:`rsatalker_core.io.session_topics.SESSION`). The
bag is read with ``rosbags``' ``AnyReader``; message definitions come from the bag itself,
else from ROS 2 Jazzy's typestore plus rsatalker's ``msg/`` files.

Times. Each message's bag timestamp is its *receive time* (ns) at the recorder;
``FlameParams.header.stamp`` is the frame's media time and ``FlameParams.source_stamp`` the
stamp of the self-audio chunk that completed the frame (``msg/FlameParams.msg``); images
carry their FLAME frame's header stamp. Hence:

* cadence: FLAME frames received per second, ``(N - 1) / (t_N - t_1)`` (fps), and jitter:
  the standard deviation of the inter-arrival times (ms);
* end-to-end latency: FLAME receive time − ``source_stamp`` (audio chunk in → motion out),
  and image receive time − the ``source_stamp`` of the image's frame (→ pixels out), ms;
* dropped frames: indices missing between the first and the last ``frame_index``;
* relationship switches: where consecutive frames (in ``frame_index`` order) report a
  different ``relationship``, with the time since the first frame (s).

Example:
    >>> session = read_session("session.mcap")          # doctest: +SKIP
    >>> report = evaluate_session(session)               # doctest: +SKIP
    >>> print(format_report(report))                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.config import FPS, MOTION_DIM
from rsatalker_core.errors import BagError, RsatalkerError
from rsatalker_core.io import session_topics as st

log = logging.getLogger(__name__)

__all__ = [
    "BagError",
    "Session",
    "read_session",
    "evaluate_session",
    "session_motion",
    "session_video_frames",
    "session_audio",
    "export_video",
    "format_report",
]

FLAME_TOPIC = st.AVATAR_FLAME.name
IMAGE_TOPIC = st.AVATAR_IMAGE.name


@dataclass
class Session:
    """The messages of one recorded session, in receive order.

    Attributes:
        path: the bag (directory, ``.mcap`` or ``.db3``).
        topics: bag topic -> message count.
        flame_index: ``[N]`` int64 ``frame_index`` of each avatar FLAME message.
        flame_stamp_ns: ``[N]`` int64 header stamps (media time), ns.
        flame_source_ns: ``[N]`` int64 ``source_stamp``, ns (0 = unset).
        flame_receive_ns: ``[N]`` int64 receive times, ns.
        flame_motion: ``[N, 56]`` float32 ``[exp 50 | jaw 3 | head 3]`` (radians).
        flame_relationship: ``[N]`` relationship names.
        image_stamp_ns / image_receive_ns: ``[M]`` int64, ns.
        images: ``M`` RGB ``[H, W, 3]`` uint8 arrays (empty when not loaded).
        audio: role (``self``/``partner``) -> list of ``(stamp_ns, sample_rate Hz, samples [S])``.
        relationship_msgs: ``(receive_ns, name)`` of each ``relationship`` message.
    """

    path: str
    topics: Dict[str, int] = field(default_factory=dict)
    flame_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    flame_stamp_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    flame_source_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    flame_receive_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    flame_motion: np.ndarray = field(default_factory=lambda: np.zeros((0, MOTION_DIM), np.float32))
    flame_relationship: List[str] = field(default_factory=list)
    image_stamp_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image_receive_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    images: List[np.ndarray] = field(default_factory=list)
    audio: Dict[str, List[Tuple[int, int, np.ndarray]]] = field(default_factory=lambda: {"self": [], "partner": []})
    relationship_msgs: List[Tuple[int, str]] = field(default_factory=list)


def _ns(t: Any) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def _match(topic: str, name: str) -> bool:
    t = topic.strip("/")
    return t == name or t.endswith("/" + name)


def _is(conn: Any, spec: st.TopicSpec) -> bool:
    """Whether bag connection ``conn`` is ``spec``'s topic (in any namespace) with its type."""
    return _match(conn.topic, spec.name) and conn.msgtype == spec.msgtype


def _image_rgb(msg: Any) -> Optional[np.ndarray]:
    """``sensor_msgs/Image`` (rgb8/bgr8) -> ``[H, W, 3]`` uint8, ``None`` when unusable."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if msg.encoding not in ("rgb8", "bgr8") or h == 0 or w == 0 or step < 3 * w or data.size != h * step:
        return None
    img = data.reshape(h, step)[:, : 3 * w].reshape(h, w, 3)
    return np.ascontiguousarray(img[..., ::-1] if msg.encoding == "bgr8" else img)


MCAP_MAGIC = b"\x89MCAP0\r\n"


def _unfinished_mcap(p: Path) -> Optional[Path]:
    """The ``.mcap`` file of an unfinished recording at ``p``, else ``None``.

    Unfinished: a bag directory without ``metadata.yaml`` (the recorder was killed before
    writing it) holding one ``.mcap`` file, or an ``.mcap`` file that starts but does not end
    with the MCAP magic (no footer: the process died while writing).
    """
    if p.is_dir():
        if (p / "metadata.yaml").exists():
            return None
        files = sorted(p.glob("*.mcap"))
        return files[0] if len(files) == 1 else None
    if p.suffix != ".mcap":
        return None
    try:
        with open(p, "rb") as fh:
            if fh.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                return None  # not MCAP at all: the regular reader says why
            fh.seek(0, 2)
            if fh.tell() < 2 * len(MCAP_MAGIC):
                return p
            fh.seek(-len(MCAP_MAGIC), 2)
            return None if fh.read() == MCAP_MAGIC else p
    except OSError:
        return None


def _stream_unfinished_mcap(path: Path, store: Any, topics: Dict[str, int]):
    """Messages of an MCAP file without summary or footer, read front to back.

    Uses the ``mcap`` library's non-seeking reader (records in file order; schemas and
    channels come before their messages). Reading stops at the first incomplete record,
    i.e. where the writer was killed; every message of the chunks flushed before it is
    returned. Yields ``(topic, msgtype, receive_ns, raw CDR bytes)`` and fills ``topics``
    (topic -> count).
    """
    from mcap.reader import NonSeekingReader

    n = 0
    with open(path, "rb") as fh:
        reader = NonSeekingReader(fh, record_size_limit=1 << 30)
        it = reader.iter_messages(log_time_order=False)
        while True:
            try:
                schema, channel, message = next(it)
            except StopIteration:
                break
            except Exception as exc:  # McapError / EndOfFile / struct errors: the truncated tail
                log.warning("%s: unfinished recording, read up to the first incomplete record "
                            "(%d messages; %s: %s)", path, n, type(exc).__name__, exc)
                break
            msgtype = schema.name if schema is not None else ""
            if msgtype not in store.fielddefs:
                continue
            topics[channel.topic] = topics.get(channel.topic, 0) + 1
            n += 1
            yield channel.topic, msgtype, int(message.log_time), message.data


def read_session(path: str, load_images: bool = True) -> Session:
    """Read a recorded session.

    A recording the recorder did not finish (killed: no ``metadata.yaml``, an ``.mcap`` file
    without summary and footer) is read front to back up to where it stops
    (:func:`_stream_unfinished_mcap`); the recorder flushes its chunks every 0.25 s, so all
    but the last moments of the session are there.

    Args:
        path: rosbag2 directory (``metadata.yaml``), or a bare ``.mcap`` / ``.db3`` file.
        load_images: keep the decoded images (for the video); timing needs only stamps.

    Returns:
        :class:`Session`, FLAME and image entries in receive order.

    Raises:
        BagError: the path is missing, is not a readable rosbag2 recording, or holds no
            ``avatar/flame_params`` (``rsatalker/msg/FlameParams``) topic.
    """
    from rosbags.highlevel import AnyReader

    from rsatalker_core.io.bag_types import session_typestore

    p = Path(path)
    if not p.exists():
        raise BagError(f"{path}: no such bag (file or directory)")
    if p.is_file() and p.suffix not in (".mcap", ".db3"):
        raise BagError(f"{path}: not a rosbag2 recording (expected a bag directory, .mcap or .db3)")
    s = Session(path=str(path))
    flame: List[Tuple[int, int, int, int, np.ndarray, str]] = []
    images: List[Tuple[int, int, Optional[np.ndarray]]] = []
    bad_images = 0
    try:  # only needed for bags without embedded definitions
        default_types = session_typestore()
    except RsatalkerError as exc:
        log.info("no default typestore (%s); relying on the bag's own definitions", exc)
        default_types = None

    def handle(kind: str, t_ns: int, msg: Any) -> None:
        nonlocal bad_images
        if kind == "flame":
            motion = np.concatenate([np.asarray(msg.expression, np.float32),
                                     np.asarray(msg.jaw_pose, np.float32),
                                     np.asarray(msg.head_pose, np.float32)])
            if motion.shape != (MOTION_DIM,):
                log.warning("%s: FLAME frame %d has %d values, not %d; skipped",
                            path, msg.frame_index, motion.size, MOTION_DIM)
                return
            flame.append((int(msg.frame_index), _ns(msg.header.stamp), _ns(msg.source_stamp),
                          int(t_ns), motion, str(msg.relationship)))
        elif kind == "image":
            img = _image_rgb(msg) if load_images else None
            if load_images and img is None:
                bad_images += 1
                return
            images.append((_ns(msg.header.stamp), int(t_ns), img))
        elif kind in ("self", "partner"):
            s.audio[kind].append((_ns(msg.header.stamp), int(msg.sample_rate), np.asarray(msg.samples, np.float32)))
        else:
            s.relationship_msgs.append((int(t_ns), str(msg.name) or
                                        f"{'blood' if msg.blood else 'non-blood'},"
                                        f"{'equal' if msg.equal else 'non-equal'}"))

    def kind_of(topic: str, msgtype: str) -> Optional[str]:
        for kind, spec in (("flame", st.AVATAR_FLAME), ("image", st.AVATAR_IMAGE), ("self", st.AUDIO_SELF),
                           ("partner", st.AUDIO_PARTNER), ("relationship", st.RELATIONSHIP)):
            if _match(topic, spec.name) and msgtype == spec.msgtype:
                return kind
        return None

    unfinished = _unfinished_mcap(p)
    try:
        if unfinished is not None:
            if default_types is None:
                raise BagError(f"{path}: an unfinished recording needs rsatalker's message definitions")
            flame_topics = set()
            for topic, msgtype, t_ns, raw in _stream_unfinished_mcap(unfinished, default_types, s.topics):
                kind = kind_of(topic, msgtype)
                if kind is None:
                    continue
                if kind == "flame":
                    flame_topics.add(topic)
                    if len(flame_topics) > 1:
                        raise BagError(f"{path}: several FLAME topics ({', '.join(sorted(flame_topics))})")
                handle(kind, t_ns, default_types.deserialize_cdr(raw, msgtype))
            if not flame_topics:
                raise BagError(
                    f"{path}: no {FLAME_TOPIC} topic of type {st.AVATAR_FLAME.msgtype} "
                    f"(topics: {', '.join(sorted(s.topics)) or 'none'})"
                )
        else:
            reader = AnyReader([p], default_typestore=default_types)
            with reader:
                s.topics = {c.topic: int(c.msgcount) for c in reader.connections}
                flame_conns = [c for c in reader.connections if _is(c, st.AVATAR_FLAME)]
                if not flame_conns:
                    raise BagError(
                        f"{path}: no {FLAME_TOPIC} topic of type {st.AVATAR_FLAME.msgtype} "
                        f"(topics: {', '.join(sorted(s.topics)) or 'none'})"
                    )
                if len({c.topic for c in flame_conns}) > 1:
                    raise BagError(f"{path}: several FLAME topics ({', '.join(sorted({c.topic for c in flame_conns}))})")
                kinds = {c.id: kind_of(c.topic, c.msgtype) for c in reader.connections}
                wanted = [c for c in reader.connections if kinds[c.id] is not None]
                for conn, t_ns, raw in reader.messages(connections=wanted):
                    handle(kinds[conn.id], t_ns, reader.deserialize(raw, conn.msgtype))
    except BagError:
        raise
    except Exception as exc:  # rosbags' AnyReaderError / ReaderError / mcap and sqlite errors
        raise BagError(f"{path}: not a readable rosbag2 recording ({type(exc).__name__}: {exc})") from exc
    if bad_images:
        log.warning("%s: %d image(s) not rgb8/bgr8 or malformed; skipped", path, bad_images)
    if not flame:
        raise BagError(f"{path}: the {FLAME_TOPIC} topic holds no messages")
    s.flame_index = np.array([f[0] for f in flame], np.int64)
    s.flame_stamp_ns = np.array([f[1] for f in flame], np.int64)
    s.flame_source_ns = np.array([f[2] for f in flame], np.int64)
    s.flame_receive_ns = np.array([f[3] for f in flame], np.int64)
    s.flame_motion = np.stack([f[4] for f in flame]).astype(np.float32)
    s.flame_relationship = [f[5] for f in flame]
    s.image_stamp_ns = np.array([i[0] for i in images], np.int64)
    s.image_receive_ns = np.array([i[1] for i in images], np.int64)
    s.images = [i[2] for i in images] if load_images else []
    for chunks in s.audio.values():
        chunks.sort(key=lambda c: c[0])
    return s


# --------------------------------------------------------------------------- timing


def _stats_ms(values_ns: np.ndarray) -> Dict[str, float]:
    """mean / p50 / p95 / max / n of ``values_ns`` in milliseconds (empty dict when none)."""
    if values_ns.size == 0:
        return {}
    v = values_ns.astype(np.float64) * 1e-6
    return {"mean": float(v.mean()), "p50": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max()), "n": int(v.size)}


def _first_by_index(s: Session) -> np.ndarray:
    """Positions of the first message of each distinct frame index, in index order."""
    _, first = np.unique(s.flame_index, return_index=True)
    return first


def _dropped(indices: np.ndarray) -> Dict[str, Any]:
    idx = np.unique(indices)
    gaps = [[int(a) + 1, int(b) - 1] for a, b in zip(idx[:-1], idx[1:]) if b - a > 1]
    return {"count": int(idx[-1] - idx[0] + 1 - idx.size), "gaps": gaps,
            "duplicates": int(indices.size - idx.size)}


def _switches(s: Session) -> Dict[str, Any]:
    order = _first_by_index(s)
    t0 = int(s.flame_receive_ns.min())
    rels = [s.flame_relationship[i] for i in order]
    out = []
    for prev, cur in zip(range(len(order) - 1), range(1, len(order))):
        if rels[cur] != rels[prev]:
            i = order[cur]
            out.append({"time_s": (int(s.flame_receive_ns[i]) - t0) * 1e-9, "frame_index": int(s.flame_index[i]),
                        "from": rels[prev], "to": rels[cur]})
    msgs = [{"time_s": (t - t0) * 1e-9, "name": n} for t, n in s.relationship_msgs]
    return {"initial": rels[0] if rels else "", "switches": out, "messages": msgs}


def _image_latency_ns(s: Session) -> np.ndarray:
    src_by_stamp = {int(st): int(src) for st, src in zip(s.flame_stamp_ns, s.flame_source_ns) if src > 0}
    out = [int(r) - src_by_stamp[int(st)] for st, r in zip(s.image_stamp_ns, s.image_receive_ns)
           if int(st) in src_by_stamp]
    return np.array(out, np.int64)


def evaluate_session(
    s: Session,
    gt: Optional[np.ndarray] = None,  # [T, 56]
    partner_gt: Optional[np.ndarray] = None,  # [T, 56]
) -> Dict[str, Any]:
    """Timing, drops, relationship switches and (with ground truth) motion metrics.

    Args:
        s: from :func:`read_session`.
        gt: the avatar's ground-truth motion ``[T, 56]``, frame ``k`` = ``frame_index`` k.
        partner_gt: the partner's ground truth ``[T, 56]`` for P-FD and rPCC.

    Returns:
        A JSON-serialisable dict: ``flame`` (frames, indices, ``fps_mean``, ``jitter_ms``,
        ``interarrival_ms``), ``dropped``, ``latency_ms`` (``flame`` and ``image``, each
        mean/p50/p95/max/n), ``images``, ``audio``, ``relationship``, and ``motion_metrics``
        (:func:`rsatalker_core.metrics.motion.motion_metrics`, unscaled) when ``gt`` is given.

    Raises:
        MetricError: ground truth malformed or overlapping the session by < 2 frames.
    """
    recv = np.sort(s.flame_receive_ns)
    dt = np.diff(recv)
    span = float(recv[-1] - recv[0]) * 1e-9
    src_ok = s.flame_source_ns > 0
    report: Dict[str, Any] = {
        "bag": s.path,
        "topics": dict(sorted(s.topics.items())),
        "flame": {
            "frames": int(np.unique(s.flame_index).size),
            "messages": int(s.flame_index.size),
            "first_index": int(s.flame_index.min()),
            "last_index": int(s.flame_index.max()),
            "duration_s": span,
            "fps_mean": (recv.size - 1) / span if span > 0 else 0.0,
            "jitter_ms": float(dt.std() * 1e-6) if dt.size else 0.0,
            "interarrival_ms": _stats_ms(dt),
        },
        "dropped": _dropped(s.flame_index),
        "latency_ms": {
            "flame": _stats_ms(s.flame_receive_ns[src_ok] - s.flame_source_ns[src_ok]),
            "image": _stats_ms(_image_latency_ns(s)),
        },
        "images": {"count": int(s.image_receive_ns.size)},
        "audio": {role: {"chunks": len(c), "seconds": float(sum(x[2].size / x[1] for x in c if x[1] > 0))}
                  for role, c in s.audio.items()},
        "relationship": _switches(s),
    }
    if s.image_receive_ns.size > 1:
        ir = np.sort(s.image_receive_ns)
        report["images"]["fps_mean"] = (ir.size - 1) / max((ir[-1] - ir[0]) * 1e-9, 1e-9)
    if gt is not None:
        from rsatalker_core.metrics.motion import MetricError, motion_metrics

        first, pred = session_motion(s)
        if first >= len(gt) - 1:
            raise MetricError(f"the session starts at frame {first}; the ground truth has {len(gt)} frames")
        partner = None if partner_gt is None else np.asarray(partner_gt)[first:]
        report["motion_metrics"] = motion_metrics(pred, np.asarray(gt)[first:], partner)
        report["motion_metrics_frames"] = int(min(len(pred), len(gt) - first))
    return report


# --------------------------------------------------------------------------- media


def _frame_rows(s: Session) -> Tuple[int, np.ndarray]:
    """``(first frame_index, rows [T])``: the FLAME message row of each frame index
    first..last; a dropped frame takes the previous one's row."""
    order = _first_by_index(s)
    idx = s.flame_index[order]
    first, last = int(idx[0]), int(idx[-1])
    pos = np.searchsorted(idx, np.arange(first, last + 1), side="right") - 1
    return first, np.asarray(order)[pos]


def session_motion(s: Session) -> Tuple[int, np.ndarray]:
    """``(first frame_index, motion [T, 56])`` for indices first..last; a dropped frame
    holds the previous one (as the recorder's ``motion.npz``)."""
    first, rows = _frame_rows(s)
    return first, s.flame_motion[rows]


def session_relationships(s: Session) -> List[str]:
    """The ``relationship`` of each frame first..last (as :func:`session_motion`; ``""`` =
    unknown)."""
    _, rows = _frame_rows(s)
    return [s.flame_relationship[int(i)] for i in rows]


def session_video_frames(s: Session) -> List[np.ndarray]:
    """One image per frame ``first..last``: the frame's render (matched by header stamp),
    else the last earlier one (the first render before it). Empty when no image matches."""
    if not s.images:
        return []
    order = _first_by_index(s)
    index_by_stamp = {int(s.flame_stamp_ns[i]): int(s.flame_index[i]) for i in order}
    by_index: Dict[int, np.ndarray] = {}
    for st, img in zip(s.image_stamp_ns, s.images):
        k = index_by_stamp.get(int(st))
        if k is not None and k not in by_index:
            by_index[k] = img
    if not by_index:
        return []
    first, last = int(s.flame_index[order[0]]), int(s.flame_index[order[-1]])
    cur, frames = by_index[min(by_index)], []
    for k in range(first, last + 1):
        cur = by_index.get(k, cur)
        frames.append(cur)
    return frames


def session_audio(s: Session, role: str = "self") -> Tuple[Optional[np.ndarray], Optional[int]]:
    """The ``role`` speech from the first FLAME frame's media time on, chunks placed by
    their stamps (gaps of lost chunks are silence). ``(None, None)`` when none was recorded.

    Returns:
        ``(samples [S] float32, sample_rate Hz)``.
    """
    chunks = s.audio.get(role) or []
    if not chunks:
        return None, None
    sr = chunks[0][1]
    chunks = [c for c in chunks if c[1] == sr]
    start = int(s.flame_stamp_ns[_first_by_index(s)[0]])
    end = max(int(round((st - start) * sr * 1e-9)) + x.size for st, _, x in chunks)
    out = np.zeros(max(end, 0), np.float32)
    for st, _, x in chunks:
        off = int(round((st - start) * sr * 1e-9))
        lo = max(0, -off)
        if lo < x.size and off + lo < out.size:
            out[off + lo: off + x.size] = x[lo:]
    return (out, sr) if out.size else (None, None)


def export_video(
    s: Session,
    path: str,
    rerender: bool = False,
    config: Optional[str] = None,
    device: Optional[str] = None,
) -> Dict[str, Any]:
    """Write the session as an mp4 at 25 fps, one frame per FLAME frame, self audio muxed.

    Args:
        s: from :func:`read_session` with ``load_images=True``.
        path: output ``.mp4``.
        rerender: when the bag holds no images, render the FLAME stream with
            :class:`rsatalker_core.render.renderer.AvatarRenderer` (``config``, ``device``),
            each frame with its recorded ``relationship`` and ``frame_index``, so the pixels
            are the live render node's.

    Returns:
        ``{"path", "frames", "audio": bool, "source": "bag images" | "re-rendered"}``.

    Raises:
        BagError: no images and ``rerender`` is false.
        VideoError: encoding failed.
    """
    from rsatalker_core.io.video import write_video

    frames: Sequence[np.ndarray] = session_video_frames(s)
    source = "bag images"
    if not frames:
        if not rerender:
            raise BagError(f"{s.path}: no {IMAGE_TOPIC} images match the FLAME frames; use --rerender "
                           "to render the FLAME stream")
        from rsatalker_core.config import load_config
        from rsatalker_core.render.renderer import AvatarRenderer

        cfg = load_config(config, {"device": device} if device else {})
        first, motion = session_motion(s)
        frames = list(AvatarRenderer(cfg).render_iter(motion, session_relationships(s), frame_index=first))
        source = "re-rendered"
    audio, sr = session_audio(s, "self")
    if audio is not None:
        audio = np.pad(audio, (0, max(0, len(frames) * sr // FPS - audio.size)))[: len(frames) * sr // FPS]
    write_video(path, frames, fps=FPS, audio=audio, sample_rate=sr)
    return {"path": str(path), "frames": len(frames), "audio": audio is not None, "source": source}


# --------------------------------------------------------------------------- report


def _fmt(d: Dict[str, float], key: str) -> str:
    return f"{d[key]:.1f}" if key in d else "-"


def format_report(r: Dict[str, Any]) -> str:
    """The report of :func:`evaluate_session` as an aligned plain-text table."""
    f, lat = r["flame"], r["latency_ms"]
    rows = [
        ("bag", r["bag"]),
        ("FLAME frames", f"{f['frames']} (indices {f['first_index']}..{f['last_index']}, {f['messages']} messages)"),
        ("FLAME cadence", f"{f['fps_mean']:.2f} fps over {f['duration_s']:.2f} s"),
        ("FLAME jitter", f"{f['jitter_ms']:.1f} ms (std of inter-arrival; p95 "
                         f"{_fmt(f['interarrival_ms'], 'p95')} ms, max {_fmt(f['interarrival_ms'], 'max')} ms)"),
        ("dropped frames", f"{r['dropped']['count']}" + (f" in gaps {r['dropped']['gaps'][:5]}" if r["dropped"]["gaps"] else "")),
    ]
    for what, key in (("audio -> FLAME", "flame"), ("audio -> image", "image")):
        d = lat[key]
        rows.append((f"latency {what}", f"mean {_fmt(d, 'mean')} / p50 {_fmt(d, 'p50')} / p95 {_fmt(d, 'p95')} ms"
                     + (f" (n={d['n']})" if d else "")))
    img = r["images"]
    rows.append(("images", f"{img['count']}" + (f" at {img['fps_mean']:.2f} fps" if "fps_mean" in img else "")))
    rows.append(("audio chunks", ", ".join(f"{k} {v['chunks']} ({v['seconds']:.2f} s)" for k, v in r["audio"].items())))
    rel = r["relationship"]
    rows.append(("relationship", rel["initial"] or "-"))
    for sw in rel["switches"]:
        rows.append(("  switch", f"t={sw['time_s']:.2f} s frame {sw['frame_index']}: {sw['from']} -> {sw['to']}"))
    if r.get("motion_metrics"):
        rows.append(("motion metrics", f"vs ground truth over {r['motion_metrics_frames']} frames (unscaled)"))
    for key, value in (r.get("motion_metrics") or {}).items():
        rows.append((f"  {key}", f"{value:.6g}"))
    if "video" in r:
        rows.append(("video", f"{r['video']['path']} ({r['video']['frames']} frames, {r['video']['source']}"
                     + (", self audio" if r["video"]["audio"] else "") + ")"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
