"""Reader for CTranslate2 ``model.bin`` files (no ctranslate2 dependency).

The format (written by ``ctranslate2.specs.model_spec.ModelSpec._serialize``; binary
versions 4-6 handled here), all integers little-endian:

=================  ==========================================================
``uint32``         binary version
string             spec name (e.g. ``WhisperSpec``)
``uint32``         spec revision
``uint32``         number of variables; then per variable:
  string           name, ``/``-separated (``encoder/layer_0/ffn/linear_0/weight``)
  ``uint8``        rank, then ``rank`` x ``uint32`` dimensions
  ``uint8``        dtype id: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16
  ``uint32``       byte count, then the raw row-major data
``uint32``         number of aliases; then per alias two strings (alias, target)
=================  ==========================================================

A string is a ``uint16`` length (including a trailing NUL) followed by the bytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, Optional

import torch

from rsatalker_core.errors import SpeechEncoderError

#: CTranslate2 binary versions this reader understands (dtype ids since version 4).
SUPPORTED_VERSIONS = (4, 5, 6)

_DTYPES = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}


@dataclass
class CTranslate2Model:
    """Variables read from a CTranslate2 ``model.bin``.

    Attributes:
        spec: spec name, e.g. ``"WhisperSpec"``.
        revision: spec revision.
        version: binary format version.
        variables: name -> tensor in the stored dtype and shape (CPU).
        aliases: alias name -> target variable name.
    """

    spec: str
    revision: int
    version: int
    variables: Dict[str, torch.Tensor] = field(default_factory=dict)
    aliases: Dict[str, str] = field(default_factory=dict)


def _read_exact(fh: BinaryIO, n: int, path: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise SpeechEncoderError(f"CTranslate2 model {path} is truncated")
    return data


def _unpack(fh: BinaryIO, fmt: str, path: str):
    return struct.unpack("<" + fmt, _read_exact(fh, struct.calcsize("<" + fmt), path))[0]


def _string(fh: BinaryIO, path: str) -> str:
    n = _unpack(fh, "H", path)
    raw = _read_exact(fh, n, path)
    return raw[:-1].decode("utf-8") if raw.endswith(b"\0") else raw.decode("utf-8")


def read_ctranslate2_model(
    path: str, keep: Optional[Callable[[str], bool]] = None
) -> CTranslate2Model:
    """Read the variables of a CTranslate2 ``model.bin``.

    Args:
        path: the ``model.bin`` file, or a directory holding one.
        keep: predicate on variable names; variables it rejects are skipped without being
            read (e.g. ``lambda n: n.startswith("encoder/")``). ``None`` keeps all.

    Returns:
        :class:`CTranslate2Model` with CPU tensors in the stored dtype.

    Raises:
        SpeechEncoderError: (naming the file) missing, truncated, an unsupported binary
            version or dtype, or a byte count that does not match the shape.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "model.bin")
    if not os.path.isfile(path):
        raise SpeechEncoderError(f"CTranslate2 model file not found: {path}")
    with open(path, "rb") as fh:
        version = _unpack(fh, "I", path)
        if version not in SUPPORTED_VERSIONS:
            raise SpeechEncoderError(
                f"{path}: CTranslate2 binary version {version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        model = CTranslate2Model(spec=_string(fh, path), revision=_unpack(fh, "I", path), version=version)
        for _ in range(_unpack(fh, "I", path)):
            name = _string(fh, path)
            rank = _unpack(fh, "B", path)
            shape = [_unpack(fh, "I", path) for _ in range(rank)]
            dtype_id = _unpack(fh, "B", path)
            nbytes = _unpack(fh, "I", path)
            if keep is not None and not keep(name):
                fh.seek(nbytes, os.SEEK_CUR)
                continue
            if dtype_id not in _DTYPES:
                raise SpeechEncoderError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            dtype = _DTYPES[dtype_id]
            numel = 1
            for d in shape:
                numel *= d
            if numel * torch.empty((), dtype=dtype).element_size() != nbytes:
                raise SpeechEncoderError(
                    f"{path}: variable {name} holds {nbytes} bytes, shape {shape} needs "
                    f"{numel} x {dtype}"
                )
            raw = bytearray(_read_exact(fh, nbytes, path))
            tensor = torch.frombuffer(raw, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
            model.variables[name] = tensor.reshape(shape)
        for _ in range(_unpack(fh, "I", path)):
            alias = _string(fh, path)
            model.aliases[alias] = _string(fh, path)
    return model
