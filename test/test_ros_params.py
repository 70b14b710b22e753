"""ROS parameters mirroring the config (rsatalker_ros.params), on real rclpy nodes in-process."""

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from rsatalker_core.errors import ConfigError  # noqa: E402
from rsatalker_ros.params import (  # noqa: E402
    CONFIG_SPECS,
    NODE_SECTIONS,
    ParameterSet,
    ParamSpec,
    field_names,
    validate_parameter,
)
from rsatalker_ros.testing import REPO, isolated_context  # noqa: E402

SMALL_CONFIG = str(REPO / "config" / "test_small.yaml")


@pytest.fixture
def ctx():
    context = isolated_context()
    yield context
    rclpy.shutdown(context=context)


def test_every_config_field_has_a_parameter_spec():
    node_fields = {f for f in field_names() if f.split(".")[0] in NODE_SECTIONS}
    assert node_fields == set(CONFIG_SPECS)
    for name, spec in CONFIG_SPECS.items():
        assert spec.description, name


def test_validate_parameter():
    assert validate_parameter("relationship", "parent-child", CONFIG_SPECS) is None
    assert "frenemies" in validate_parameter("relationship", "frenemies", CONFIG_SPECS)
    assert "logmel" in validate_parameter("speech.encoder", "mfcc", CONFIG_SPECS)
    assert validate_parameter("render.background", [0.0, 0.5, 1.0], CONFIG_SPECS) is None
    assert validate_parameter("render.background", [0.0, 2.0, 1.0], CONFIG_SPECS) is not None
    assert validate_parameter("social.time_dim", 15, CONFIG_SPECS) is not None


def test_precedence_overrides_beat_config_file_beat_defaults(ctx):
    node = Node(
        "motion_node", context=ctx,
        parameter_overrides=[Parameter("config_file", value=SMALL_CONFIG), Parameter("render.width", value=96)],
    )
    try:
        pset = ParameterSet(node, ["device", "speech", "render", "relationship"])
        cfg = pset.declare()
        assert cfg.speech.encoder == "logmel"  # from the config file
        assert cfg.render.width == 96 and cfg.render.height == 64  # override, then file
        assert cfg.render.fov_deg == 20.0  # embedded default
        assert list(node.get_parameter("render.background").value) == [1.0, 1.0, 1.0]
        desc = node.describe_parameter("render.width")
        assert desc.read_only and desc.integer_range[0].from_value == 8 and "pixels" in desc.description
        assert not node.describe_parameter("relationship").read_only
    finally:
        node.destroy_node()


def test_live_change_validated_and_applied(ctx):
    seen = []
    node = Node("n", context=ctx)
    try:
        pset = ParameterSet(node, ["relationship", "render.width"], on_change=lambda n, v: seen.append((n, v)))
        pset.declare()
        assert seen == []  # start-up values are not "changes"
        ok = node.set_parameters([Parameter("relationship", value="siblings")])[0]
        assert ok.successful and seen == [("relationship", "siblings")]
        bad = node.set_parameters([Parameter("relationship", value="frenemies")])[0]
        assert not bad.successful and "frenemies" in bad.reason
        assert node.get_parameter("relationship").value == "siblings"
        ro = node.set_parameters([Parameter("render.width", value=128)])[0]
        assert not ro.successful  # read-only after start-up
        out_of_range = Parameter("render.width", value=2)
        assert not node.set_parameters([out_of_range])[0].successful
    finally:
        node.destroy_node()


def test_bad_startup_values_raise_config_error(ctx):
    for override in (Parameter("speech.encoder", value="mfcc"), Parameter("render.width", value=4),
                     Parameter("render.width", value="wide")):
        node = Node("n", context=ctx, parameter_overrides=[override])
        try:
            with pytest.raises(ConfigError, match=override.name):
                ParameterSet(node, ["speech", "render"]).declare()
        finally:
            node.destroy_node()
    node = Node("n", context=ctx, parameter_overrides=[Parameter("config_file", value="/no/such.yaml")])
    try:
        with pytest.raises(ConfigError, match="/no/such.yaml"):
            ParameterSet(node, ["render"]).declare()
    finally:
        node.destroy_node()


def test_extra_parameters(ctx):
    node = Node("n", context=ctx, parameter_overrides=[Parameter("rate", value=2.0)])
    try:
        pset = ParameterSet(node, [], {"rate": (1.0, ParamSpec("speed", float_range=(0.1, 10.0)))})
        pset.declare()
        assert pset.value("rate") == 2.0
        assert pset.names() == ["config_file", "rate"]
    finally:
        node.destroy_node()


def test_descriptors_carry_the_config_field_metadata(ctx):
    """Every config parameter's descriptor has the range, description and liveness of its
    config field (rsatalker_core.config.field_specs), and rclpy refuses what the YAML
    loader refuses."""
    from rsatalker_core.config import field_specs, load_config

    fields = field_specs()
    node = Node("all_params", context=ctx)
    try:
        ParameterSet(node, list(NODE_SECTIONS)).declare()
        for name, spec in CONFIG_SPECS.items():
            fs = fields[name]
            desc = node.describe_parameter(name)
            assert desc.description == fs.description and desc.read_only == (not fs.live), name
            if fs.range is None or fs.type is list:
                assert not desc.integer_range and not desc.floating_point_range, name
                continue
            if fs.type is int:
                r = desc.integer_range[0]
                assert (r.from_value, r.to_value, r.step) == (fs.range[0], fs.range[1], fs.step or 1), name
            else:
                r = desc.floating_point_range[0]
                assert (r.from_value, r.to_value) == pytest.approx(fs.range), name
    finally:
        node.destroy_node()
    # out of range at start-up: the node refuses it as the YAML loader does, naming the field
    for name, value in (("flame.n_shape", 301), ("speech.n_mels", 513), ("social.max_offset", 0.5),
                        ("social.time_dim", 15), ("render.background", [0.0, 1.5, 0.0])):
        with pytest.raises(ConfigError, match=name):
            load_config(None, {name: value})
        node = Node("n", context=ctx, parameter_overrides=[Parameter(name, value=value)])
        try:
            with pytest.raises(ConfigError, match=name):
                ParameterSet(node, [name]).declare()
        finally:
            node.destroy_node()
    # the ranges the node used to disagree on: 0 shape coefficients and 512 mel bands are valid
    node = Node("n", context=ctx, parameter_overrides=[Parameter("flame.n_shape", value=0),
                                                       Parameter("speech.n_mels", value=512)])
    try:
        cfg = ParameterSet(node, ["flame", "speech"]).declare()
        assert cfg.flame.n_shape == 0 and cfg.speech.n_mels == 512
    finally:
        node.destroy_node()
