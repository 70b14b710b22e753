"""The relationship between the two speakers: a plain value type (RSATalker §3.3).

The paper describes relationships along two axes, each with two values:

====================  =========  =========  =========================
name                  blood      equal      example
====================  =========  =========  =========================
siblings              blood      equal      brothers, sisters
parent_child          blood      non-equal  parent and child
couple                non-blood  equal      couple, friends
superior_subordinate  non-blood  non-equal  boss and employee
====================  =========  =========  =========================

:class:`Relationship` is what configs, CLI flags, ROS messages and dataset indexes carry;
:func:`relationship_tensors` turns a batch of them into the axis indices that the
relationship embeddings are looked up with (:mod:`rsatalker_core.model.social`,
:mod:`rsatalker_core.avatar.offsets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Union

import torch

from rsatalker_core.errors import RelationshipError

_NAMES = {
    (True, True): "siblings",
    (True, False): "parent_child",
    (False, True): "couple",
    (False, False): "superior_subordinate",
}
_BY_NAME = {v: k for k, v in _NAMES.items()}


def _norm(token: str) -> str:
    return token.strip().lower().replace("-", "_").replace(" ", "_")


@dataclass(frozen=True)
class Relationship:
    """One of the paper's four social relationships, as its two axes.

    Attributes:
        blood: True for blood relations (siblings, parent–child).
        equal: True for equal status (siblings, couple/friends).
    """

    blood: bool
    equal: bool

    @property
    def name(self) -> str:
        """Canonical name: ``siblings``, ``parent_child``, ``couple`` or ``superior_subordinate``."""
        return _NAMES[(self.blood, self.equal)]

    @property
    def axes(self) -> str:
        """Axis form, e.g. ``"non-blood,equal"``."""
        return f"{'' if self.blood else 'non-'}blood,{'' if self.equal else 'non-'}equal"

    @property
    def index(self) -> int:
        """Class index 0..3 in the order of :meth:`names`."""
        return self.names().index(self.name)

    @staticmethod
    def names() -> List[str]:
        """The four canonical names, in index order."""
        return ["siblings", "parent_child", "couple", "superior_subordinate"]

    @classmethod
    def all(cls) -> List["Relationship"]:
        return [cls.parse(n) for n in cls.names()]

    @classmethod
    def parse(cls, value: Union[str, "Relationship"]) -> "Relationship":
        """Parse a name (``couple``, ``parent-child``, ...) or the axis form.

        The axis form is two comma-separated tokens, one per axis in either order:
        ``blood``/``non-blood`` and ``equal``/``non-equal`` (``non_blood`` and
        ``nonblood`` are accepted too).

        Raises:
            RelationshipError: for anything else, listing the accepted values.
        """
        if isinstance(value, Relationship):
            return value
        if not isinstance(value, str):
            raise RelationshipError(f"relationship must be a string, got {value!r}")
        text = _norm(value)
        if text in _BY_NAME:
            return cls(*_BY_NAME[text])
        parts = [_norm(p).replace("non_", "non") for p in value.split(",")]
        if len(parts) == 2:
            blood = equal = None
            for p in parts:
                if p in ("blood", "nonblood") and blood is None:
                    blood = p == "blood"
                elif p in ("equal", "nonequal") and equal is None:
                    equal = p == "equal"
            if blood is not None and equal is not None:
                return cls(blood, equal)
        raise RelationshipError(
            f"unknown relationship '{value}': use one of {', '.join(cls.names())} "
            "or the axis form 'blood|non-blood,equal|non-equal'"
        )


def relationship_tensors(
    rels: Sequence[Union[str, Relationship]], device: Union[str, torch.device, None] = None
) -> tuple:
    """Axis indices for a batch: ``(blood [B] long, equal [B] long)``; 1 = blood / equal."""
    parsed = [Relationship.parse(r) for r in rels]
    blood = torch.tensor([int(r.blood) for r in parsed], dtype=torch.long, device=device)
    equal = torch.tensor([int(r.equal) for r in parsed], dtype=torch.long, device=device)
    return blood, equal
