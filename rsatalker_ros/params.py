"""ROS 2 parameters that mirror :class:`rsatalker_core.config.RsatalkerConfig`.

Parameter names are the config field names, nested sections joined with ``.``
(``relationship``, ``device``, ``streaming.lookahead_frames``, ``render.width``), so a
config YAML and a ROS params file use the same keys.

Precedence, highest first: ROS overrides (``--ros-args -p``, ``--params-file``, launch
parameters) > the rsatalker config file named by the ``config_file`` parameter > the
embedded defaults of :mod:`rsatalker_core.config`.

Every parameter is declared with a :class:`ParameterDescriptor` (description, integer or
floating-point range, read-only unless it can change live). For config fields these come
from the field metadata of :mod:`rsatalker_core.config` (:func:`~rsatalker_core.config.setting`),
the same the YAML loader validates with, so the two never disagree. Values the ranges cannot
express (choices, list lengths, the relationship name) are checked by :func:`validate_parameter`, which
the nodes call from their set-parameters callback; it runs for startup values too, because
the callback is registered before the parameters are declared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from rsatalker_core.config import FieldSpec, RsatalkerConfig, field_specs, load_config
from rsatalker_core.errors import ConfigError, RelationshipError
from rsatalker_core.relationship import Relationship

CONFIG_FILE = "config_file"


@dataclass(frozen=True)
class ParamSpec:
    """Descriptor data of one parameter.

    Attributes:
        description: one line, with units.
        int_range: inclusive ``(lo, hi)`` for integers.
        float_range: inclusive ``(lo, hi)`` for floats.
        int_step: spacing of valid integers from ``int_range[0]`` (2 = every other value).
        choices: allowed string values (checked by :func:`validate_parameter`).
        live: may change while the node runs (otherwise read-only after start-up).
        config_field: the config field this parameter mirrors (``None`` for node-specific ones);
            :func:`validate_parameter` applies its range, choices and length.
    """

    description: str
    int_range: Optional[Tuple[int, int]] = None
    float_range: Optional[Tuple[float, float]] = None
    int_step: int = 1
    choices: Optional[Tuple[str, ...]] = None
    live: bool = False
    config_field: Optional[FieldSpec] = None


#: Config names and sections the nodes draw from. Offline-only sections (``data``, training)
#: are not ROS parameters.
NODE_SECTIONS = ("device", "seed", "relationship", "flame", "speech", "social", "motion", "avatar",
                 "render", "streaming")

def param_spec(fs: FieldSpec) -> ParamSpec:
    """The :class:`ParamSpec` of config field ``fs``: its description, range (integer or
    floating point by the field's type; none for list fields, whose per-element range
    :func:`validate_parameter` checks), choices and liveness, as :func:`setting` recorded them."""
    scalar_range = fs.range if fs.range is not None and fs.type is not list else None
    return ParamSpec(
        fs.description,
        int_range=tuple(int(v) for v in scalar_range) if scalar_range and fs.type is int else None,
        float_range=tuple(float(v) for v in scalar_range) if scalar_range and fs.type is float else None,
        int_step=fs.step or 1,
        choices=fs.choices,
        live=fs.live,
        config_field=fs,
    )


#: Every config field a node may expose, by dotted name, from the field metadata of
#: :mod:`rsatalker_core.config` (the one place ranges and descriptions are written).
CONFIG_SPECS: Dict[str, ParamSpec] = {
    name: param_spec(fs) for name, fs in field_specs().items() if name.split(".")[0] in NODE_SECTIONS
}


def config_names(prefixes: Sequence[str]) -> List[str]:
    """Dotted config names selected by ``prefixes`` (a full name or a section like ``render``)."""
    out = []
    for name in CONFIG_SPECS:
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            out.append(name)
    return out


def parameter_names(config_prefixes: Sequence[str], extra: Optional[Dict[str, Any]] = None) -> List[str]:
    """Every parameter a node built from ``config_prefixes`` and ``extra`` declares."""
    return [CONFIG_FILE] + config_names(config_prefixes) + list(extra or {})


def _get_dotted(cfg: Any, dotted: str) -> Any:
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def descriptor(name: str, spec: ParamSpec, read_only: Optional[bool] = None) -> ParameterDescriptor:
    """A :class:`ParameterDescriptor` for ``spec`` (read-only unless ``spec.live``)."""
    desc = ParameterDescriptor(
        name=name,
        description=spec.description,
        read_only=(not spec.live) if read_only is None else read_only,
    )
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.int_range is not None:
        desc.integer_range = [
            IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=spec.int_step)
        ]
    if spec.float_range is not None:
        desc.floating_point_range = [
            FloatingPointRange(from_value=float(spec.float_range[0]), to_value=float(spec.float_range[1]), step=0.0)
        ]
    return desc


def validate_parameter(name: str, value: Any, specs: Dict[str, ParamSpec]) -> Optional[str]:
    """Why ``value`` is not acceptable for parameter ``name``, or ``None`` when it is.

    Checks choices, a config field's metadata (range, step, choices, list length; the same
    check :func:`rsatalker_core.config.load_config` applies) and the relationship name;
    rclpy also enforces the descriptors' ranges and the types.
    """
    spec = specs.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got '{value}'"
    if spec.config_field is not None:
        if spec.config_field.type is list and value is not None:
            value = [float(v) for v in value]
        reason = spec.config_field.check(value)
        if reason is not None:
            return f"{name} {reason}"
    if name == "relationship":
        try:
            Relationship.parse(value)
        except RelationshipError as exc:
            return str(exc)
    return None


class ParameterSet:
    """Declares a node's parameters and turns them into an :class:`RsatalkerConfig`.

    Args:
        node: the node to declare on.
        config_prefixes: config names or sections the node exposes (``["render", "device"]``).
        extra: node-specific parameters: ``name -> (default, ParamSpec)``.
        on_change: called with ``(name, value)`` for each accepted live change after
            :meth:`declare` has finished (not for start-up values).

    Raises (from :meth:`declare`):
        ConfigError: the config file is missing/malformed or a value is rejected.
    """

    def __init__(
        self,
        node: Node,
        config_prefixes: Sequence[str],
        extra: Optional[Dict[str, Tuple[Any, ParamSpec]]] = None,
        on_change: Optional[Callable[[str, Any], None]] = None,
    ):
        self.node = node
        self.config_params = config_names(config_prefixes)
        self.extra = dict(extra or {})
        self.specs: Dict[str, ParamSpec] = {n: CONFIG_SPECS[n] for n in self.config_params}
        self.specs.update({n: spec for n, (_, spec) in self.extra.items()})
        self.on_change = on_change
        self._declared = False
        node.add_on_set_parameters_callback(self._on_set)

    def names(self) -> List[str]:
        """All parameter names this set declares (``config_file`` included)."""
        return parameter_names(self.config_params, self.extra)

    def declare(self) -> RsatalkerConfig:
        """Declare everything; return the config built from the resulting values."""
        node = self.node
        config_file = node.declare_parameter(
            CONFIG_FILE,
            "",
            ParameterDescriptor(
                name=CONFIG_FILE,
                description="rsatalker config YAML giving the defaults of the other parameters",
                read_only=True,
            ),
        ).value
        base = load_config(config_file or None)
        try:
            for name in self.config_params:
                default = _get_dotted(base, name)
                if isinstance(default, list):
                    default = [float(v) for v in default]
                node.declare_parameter(name, default, descriptor(name, self.specs[name]))
            for name, (default, spec) in self.extra.items():
                node.declare_parameter(name, default, descriptor(name, spec))
        except Exception as exc:  # rclpy's InvalidParameter*Exception: bad override
            raise ConfigError(f"node '{node.get_name()}': {exc}") from exc
        self._declared = True
        return self.config()

    def config(self) -> RsatalkerConfig:
        """The config from the current parameter values (config file + overrides)."""
        overrides = {n: self.value(n) for n in self.config_params}
        return load_config(self.value(CONFIG_FILE) or None, overrides)

    def value(self, name: str) -> Any:
        """Current value of a declared parameter (arrays as lists)."""
        v = self.node.get_parameter(name).value
        if isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
            v = list(v)
        return v

    def _on_set(self, params: List[Parameter]) -> SetParametersResult:
        for p in params:
            reason = validate_parameter(p.name, p.value, self.specs)
            if reason is not None:
                if self._declared:  # at start-up the node's construction fails with it instead
                    self.node.get_logger().warning(f"refused {p.name}={p.value!r}: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        if self._declared and self.on_change is not None:
            for p in params:
                try:
                    self.on_change(p.name, p.value)
                except Exception as exc:  # the node could not apply it: refuse, keep running
                    return SetParametersResult(successful=False, reason=f"{p.name}: {exc}")
        return SetParametersResult(successful=True)


def field_names(cfg_cls: type = RsatalkerConfig, prefix: str = "") -> List[str]:
    """Every dotted leaf name of a config dataclass (for tests)."""
    out = []
    for f in dataclasses.fields(cfg_cls):
        default = getattr(cfg_cls(), f.name)
        if dataclasses.is_dataclass(default):
            out += field_names(type(default), prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out
