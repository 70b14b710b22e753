"""Message types of rsatalker's rosbag2 recordings, for the pure-Python ``rosbags`` library.

rsatalker_core never imports rclpy or generated message packages; recordings are read and
written with ``rosbags`` (https://ternaris.gitlab.io/rosbags/). Its typestore for ROS 2 Jazzy
holds ``sensor_msgs/msg/Image``, ``std_msgs/msg/Header`` and ``builtin_interfaces/msg/Time``;
rsatalker's own types are parsed from the ``.msg`` files the package ships (``msg/`` in the
source tree, ``share/rsatalker/msg`` once installed), so the definitions and type hashes
(RIHS01) are the ones rosidl builds from the same files.

The recorded topics and their types are those of
:data:`rsatalker_core.io.session_topics.SESSION`. The recorder node's bag writer
(``rsatalker_ros.bag_recorder``) and the bag reader (:mod:`rsatalker_core.evaluation.bag`)
both use this typestore.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

from rsatalker_core.errors import RsatalkerError
from rsatalker_core.io.session_topics import SESSION_TOPICS

log = logging.getLogger(__name__)

__all__ = [
    "PACKAGE",
    "REQUIRED_TYPES",
    "MSG_DIR_ENV",
    "find_msg_dir",
    "custom_msg_types",
    "session_typestore",
    "msgdef",
]

#: ROS package that owns the custom messages.
PACKAGE = "rsatalker"
#: rsatalker's own types the session topics use (the package may define more).
REQUIRED_TYPES = sorted({t for t in SESSION_TOPICS.values() if t.startswith(PACKAGE + "/")})
#: Environment variable that overrides where the ``.msg`` files are looked for.
MSG_DIR_ENV = "RSATALKER_MSG_DIR"


def _candidates() -> List[Path]:
    here = Path(__file__).resolve()
    out: List[Path] = []
    if os.environ.get(MSG_DIR_ENV):
        out.append(Path(os.environ[MSG_DIR_ENV]))
    # source tree / editable install: <repo>/rsatalker_core/io/bag_types.py -> <repo>/msg
    out.append(here.parents[2] / "msg")
    # colcon / ament: <prefix>/share/rsatalker/msg for every prefix on AMENT_PREFIX_PATH
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            out.append(Path(prefix) / "share" / PACKAGE / "msg")
    # installed next to the interpreter (venv: scripts/build_msgs.sh) or above the package
    # (<prefix>/lib/pythonX.Y/site-packages/rsatalker_core -> <prefix>/share/rsatalker/msg)
    out.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    out += [p / "share" / PACKAGE / "msg" for p in here.parents[2:6]]
    return out


def find_msg_dir() -> Path:
    """The directory holding ``FlameParams.msg``, ``AudioChunk.msg`` and ``Relationship.msg``.

    Looks in order at ``$RSATALKER_MSG_DIR``, the source tree's ``msg/``, ``share/rsatalker/msg``
    under each ``AMENT_PREFIX_PATH`` entry, under ``sys.prefix`` and above the installed package.

    Raises:
        RsatalkerError: none of them holds ``FlameParams.msg`` (the list names the places tried).
    """
    tried = _candidates()
    for path in tried:
        if (path / "FlameParams.msg").is_file():
            return path
    raise RsatalkerError(
        "rsatalker's message definitions (FlameParams.msg) were not found in any of: "
        + ", ".join(str(p) for p in tried)
        + f" (set {MSG_DIR_ENV})"
    )


def custom_msg_types(msg_dir: Optional[Path] = None) -> Dict[str, object]:
    """rosbags field definitions of every ``rsatalker/msg/*`` type, parsed from ``msg_dir``.

    Raises:
        RsatalkerError: the directory is not found, or a ``.msg`` file does not parse.
    """
    from rosbags.typesys import get_types_from_msg

    msg_dir = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    types: Dict[str, object] = {}
    for path in sorted(msg_dir.glob("*.msg")):
        name = f"{PACKAGE}/msg/{path.stem}"
        try:
            types.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
        except Exception as exc:  # rosbags' TypesysError and parser errors
            if name in REQUIRED_TYPES:
                raise RsatalkerError(f"{path}: not a valid ROS 2 message definition ({exc})") from exc
            log.warning("%s: not parsed, skipped (%s)", path, exc)  # a type no session topic uses
    missing = [t for t in REQUIRED_TYPES if t not in types]
    if missing:
        raise RsatalkerError(f"{msg_dir}: lacks the definitions of {', '.join(missing)}")
    return types


def session_typestore(msg_dir: Optional[Path] = None):
    """A rosbags ``Typestore``: ROS 2 Jazzy's types plus rsatalker's own.

    Returns:
        ``rosbags.typesys.store.Typestore`` that serializes/deserializes CDR of every
        :data:`~rsatalker_core.io.session_topics.SESSION_TOPICS` type.

    Raises:
        RsatalkerError: the ``.msg`` files are not found or do not parse.
    """
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(custom_msg_types(msg_dir))
    return store


def msgdef(store, msgtype: str) -> tuple:
    """``(definition text, RIHS01 hash)`` of ``msgtype`` as rosbag2 stores it.

    The text is the type's ``.msg`` definition followed by each dependency's, separated by
    ``=====`` lines and ``MSG: pkg/Type`` headers (the ``ros2msg`` schema encoding of MCAP).
    """
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text, store.hash_rihs01(msgtype)
