"""Relationship labels for dataset clips: the clip -> relationship index (docs/data.md §7).

DualTalk carries no relationship labels and RSATalker's labelled dataset is not public, so a
separate index file supplies them. Two formats are read:

* **CSV** (``.csv``, or any other suffix): one ``clip,relationship`` row per clip. An optional
  header row ``clip,relationship`` is skipped; blank lines and lines starting with ``#`` are
  ignored. Fields may be quoted (Python's :mod:`csv` dialect), so the axis form
  ``"non-blood,equal"`` fits in one field.
* **YAML** (``.yaml`` / ``.yml``): a mapping ``clip: relationship``.

A relationship is anything :meth:`rsatalker_core.relationship.Relationship.parse` accepts: a name
(``siblings``, ``parent_child``, ``couple``, ``superior_subordinate``) or the axis form
(``blood,non-equal``). A clip id is the file-name prefix before ``_speaker1`` / ``_speaker2``
(``UbjUDM1MiGE_sub_video_72``).

Unlabelled clips follow a policy (``DataConfig.unlabelled``): ``"default"`` gives them
``DataConfig.default_relationship`` (and :attr:`RelationshipIndex.defaulted` records which
clips got it), ``"refuse"`` raises :class:`~rsatalker_core.errors.RelationshipError`.

Example:
    >>> index = load_relationship_index("data/relationships.csv")
    >>> index.lookup("clip_0001", policy="default", default="couple").name
    'siblings'
"""

from __future__ import annotations

import csv
import os
from typing import Dict, Iterator, Optional, Set, Union

import yaml

from rsatalker_core.errors import RelationshipError
from rsatalker_core.relationship import Relationship

#: Accepted values of the unlabelled-clip policy.
UNLABELLED_POLICIES = ("default", "refuse")


class RelationshipIndex:
    """A clip -> :class:`~rsatalker_core.relationship.Relationship` mapping read from an index file.

    Args:
        labels: ``{clip id: Relationship}``.
        source: file the labels came from (named in error messages); ``""`` for none.

    Attributes:
        defaulted: clip ids that :meth:`lookup` gave the default relationship (policy
            ``"default"``), so a training log can report how many clips were unlabelled.
    """

    def __init__(self, labels: Optional[Dict[str, Relationship]] = None, source: str = ""):
        self._labels: Dict[str, Relationship] = dict(labels or {})
        self.source = source
        self.defaulted: Set[str] = set()

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, clip: str) -> bool:
        return clip in self._labels

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def get(self, clip: str) -> Optional[Relationship]:
        """The clip's label, or ``None`` when the index has none."""
        return self._labels.get(clip)

    def lookup(
        self, clip: str, policy: str = "default", default: Union[str, Relationship] = "couple"
    ) -> Relationship:
        """The relationship of ``clip``, applying the unlabelled-clip ``policy``.

        Args:
            clip: clip id.
            policy: ``"default"`` (unlabelled clips get ``default``) or ``"refuse"``.
            default: relationship for unlabelled clips under ``"default"``.

        Raises:
            RelationshipError: ``clip`` is unlabelled and ``policy`` is ``"refuse"`` (the
                message names the index file), ``policy`` is unknown, or ``default`` is not
                a relationship.
        """
        check_policy(policy)
        rel = self._labels.get(clip)
        if rel is not None:
            return rel
        if policy == "refuse":
            where = f"index {self.source}" if self.source else "no relationship index was given"
            raise RelationshipError(
                f"clip '{clip}' has no relationship label ({where}); label it or set "
                "data.unlabelled to 'default'"
            )
        self.defaulted.add(clip)
        return Relationship.parse(default)


def check_policy(policy: str) -> str:
    """Validate an unlabelled-clip policy name.

    Raises:
        RelationshipError: ``policy`` is not one of :data:`UNLABELLED_POLICIES`.
    """
    if policy not in UNLABELLED_POLICIES:
        raise RelationshipError(
            f"unknown unlabelled-clip policy '{policy}' (use one of {', '.join(UNLABELLED_POLICIES)})"
        )
    return policy


def _parse_label(value: str, where: str) -> Relationship:
    try:
        return Relationship.parse(value)
    except RelationshipError as exc:
        raise RelationshipError(f"{where}: {exc}") from None


def _add(labels: Dict[str, Relationship], clip: str, rel: Relationship, where: str) -> None:
    if not clip:
        raise RelationshipError(f"{where}: empty clip id")
    old = labels.get(clip)
    if old is not None and old != rel:
        raise RelationshipError(
            f"{where}: clip '{clip}' labelled twice with different relationships "
            f"({old.name} and {rel.name})"
        )
    labels[clip] = rel


def _read_csv(path: str) -> Dict[str, Relationship]:
    labels: Dict[str, Relationship] = {}
    with open(path, "r", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        first = True
        for row in reader:
            where = f"{path}:{reader.line_num}"
            cells = [c.strip() for c in row]
            if not cells or all(not c for c in cells) or cells[0].startswith("#"):
                continue
            if first and [c.lower() for c in cells] == ["clip", "relationship"]:
                first = False
                continue
            first = False
            if len(cells) != 2:
                raise RelationshipError(
                    f"{where}: expected 2 fields 'clip,relationship', got {len(cells)} "
                    f"({','.join(row)!r}); quote the axis form, e.g. clip,\"blood,equal\""
                )
            _add(labels, cells[0], _parse_label(cells[1], where), where)
    return labels


def _read_yaml(path: str) -> Dict[str, Relationship]:
    with open(path, "r", encoding="utf-8") as fh:
        text = fh.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RelationshipError(f"{path}: malformed YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RelationshipError(f"{path}: a YAML relationship index must be a mapping clip: relationship")
    # Line numbers for messages: compose the node tree once (cheap for index-sized files).
    lines: Dict[str, int] = {}
    node = yaml.compose(text)
    for key_node, _ in getattr(node, "value", []):
        lines[str(key_node.value)] = key_node.start_mark.line + 1
    labels: Dict[str, Relationship] = {}
    for clip, value in data.items():
        where = f"{path}:{lines.get(str(clip), '?')}"
        if not isinstance(value, str):
            raise RelationshipError(f"{where}: relationship of clip '{clip}' must be a string, got {value!r}")
        _add(labels, str(clip).strip(), _parse_label(value, where), where)
    return labels


def load_relationship_index(path: Union[str, os.PathLike, None]) -> RelationshipIndex:
    """Read a relationship index file (CSV or YAML; see the module docstring).

    Args:
        path: the index file; ``None`` or ``""`` gives an empty index (every clip unlabelled).

    Returns:
        :class:`RelationshipIndex`.

    Raises:
        RelationshipError: the file is missing or unreadable, or a line is malformed (wrong
            field count, empty clip id, unknown relationship, a clip labelled twice with
            different relationships); the message names the file and line.
    """
    if path is None or os.fspath(path) == "":
        return RelationshipIndex({}, "")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RelationshipError(f"relationship index not found: {path}")
    try:
        if path.lower().endswith((".yaml", ".yml")):
            labels = _read_yaml(path)
        else:
            labels = _read_csv(path)
    except UnicodeDecodeError as exc:
        raise RelationshipError(f"{path}: not a UTF-8 text file ({exc})") from exc
    return RelationshipIndex(labels, path)


def write_relationship_index(path: Union[str, os.PathLike], labels: Dict[str, Union[str, Relationship]]) -> None:
    """Write ``{clip: relationship}`` as a CSV index (header ``clip,relationship``,
    canonical names, sorted by clip), atomically (temporary file + rename).

    Raises:
        RelationshipError: a label is not a relationship.
    """
    path = os.fspath(path)
    rows = sorted((str(c), Relationship.parse(r).name) for c, r in labels.items())
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip", "relationship"])
        writer.writerows(rows)
    os.replace(tmp, path)
