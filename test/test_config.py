import dataclasses

import pytest
import yaml

from rsatalker_core.config import RsatalkerConfig, load_config, to_dict
from rsatalker_core.errors import ConfigError

from conftest import REPO


def test_default_yaml_mirrors_embedded_default():
    with open(REPO / "config" / "default.yaml") as fh:
        assert yaml.safe_load(fh) == to_dict(RsatalkerConfig())
    assert load_config(str(REPO / "config" / "default.yaml")) == load_config(None)


def _leaves(tree, prefix=""):
    """Dotted key -> value for every leaf of a nested dict."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _getattr_dotted(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_every_config_yaml_loads_and_every_value_takes_effect():
    # ros.yaml is the ROS parameter file (test_launch); head_driver_*.yaml configure the
    # head_driver node (rsatalker_core.robot, test_head_driver)
    paths = [p for p in sorted((REPO / "config").glob("*.yaml"))
             if p.name != "ros.yaml" and not p.name.startswith("head_driver")]
    assert len(paths) >= 3
    for path in paths:
        with open(path) as fh:
            written = _leaves(yaml.safe_load(fh) or {})
        assert written, f"{path.name} sets nothing"
        loaded = _leaves(to_dict(load_config(str(path))))
        for key, value in written.items():
            # every key the file writes reaches the config, with its value (ints as floats ok)
            assert key in loaded and loaded[key] == value, (path.name, key, value, loaded.get(key))
            assert type(loaded[key]) is type(_getattr_dotted(RsatalkerConfig(), key)), (path.name, key)


def test_overrides_and_types():
    cfg = load_config(None, {"render.width": 128, "device": "cpu", "render.fov_deg": 30})
    assert cfg.render.width == 128 and isinstance(cfg.render.fov_deg, float)
    with pytest.raises(ConfigError, match="render.widht"):
        load_config(None, {"render.widht": 3})
    with pytest.raises(ConfigError, match="must be int"):
        load_config(None, {"motion.d_model": "big"})
    with pytest.raises(ConfigError, match="true/false"):
        load_config(None, {"speech.freeze": "yes"})


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("motion: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(str(bad))
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(scalar))


def test_dotted_overrides_reach_exactly_their_field_and_round_trip_through_yaml(tmp_path):
    small = load_config(str(REPO / "config" / "test_small.yaml"))
    default = _leaves(to_dict(RsatalkerConfig()))
    changed = {k: v for k, v in _leaves(to_dict(small)).items() if v != default[k]}
    assert {"speech.encoder", "motion.d_model", "render.width"} <= set(changed)
    for key, value in changed.items():  # one override at a time, nested sections included
        got = _leaves(to_dict(load_config(None, {key: value})))
        assert {k for k in got if got[k] != default[k]} == {key}, key
        assert got[key] == value
    # all of them at once give the file's config; to_dict -> YAML -> load_config is lossless
    assert load_config(None, changed) == small
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(to_dict(small)))
    assert load_config(str(dumped)) == small
    assert dataclasses.is_dataclass(small.train.stage2.densify)


def _out_of_range(spec):
    """Values just outside ``spec.range`` (below and above), in the field's type."""
    lo, hi = spec.range
    if spec.type is list:
        return [[lo - 0.5] + list(spec.default[1:]), list(spec.default[:-1]) + [hi + 0.5]]
    if spec.type is int:
        return [int(lo) - 1, int(hi) + 1]
    return [lo - max(abs(lo), 1e-3), hi * 1.5 + 1e-3]


def test_every_ranged_field_rejects_out_of_range_values_by_name(tmp_path):
    from rsatalker_core.config import field_specs

    specs = field_specs()
    ranged = {n: s for n, s in specs.items() if s.range is not None}
    # the fields with a physical bound have one (a sample, and the two that used to disagree)
    assert {"flame.n_shape", "flame.n_expr", "speech.n_mels", "render.width", "render.background",
            "streaming.lookahead_frames", "social.time_dim"} <= set(ranged)
    assert ranged["flame.n_shape"].range == (0, 300) and ranged["speech.n_mels"].range == (1, 512)
    for name, spec in ranged.items():
        lo, hi = spec.range
        for edge in (lo, hi):  # the bounds are inclusive
            value = [edge] * spec.length if spec.type is list else spec.type(edge)
            if spec.step and (edge - lo) % spec.step:
                continue
            assert _getattr_dotted(load_config(None, {name: value}), name) == value, name
        for bad in _out_of_range(spec):
            with pytest.raises(ConfigError, match=rf"'{name}' must be in"):
                load_config(None, {name: bad})
    # the same through a YAML file, nested as written by hand
    path = tmp_path / "bad.yaml"
    path.write_text("flame:\n  n_shape: 301\n")
    with pytest.raises(ConfigError, match="flame.n_shape"):
        load_config(str(path))


def test_steps_choices_and_lengths_are_enforced():
    from rsatalker_core.config import field_specs

    specs = field_specs()
    with pytest.raises(ConfigError, match="social.time_dim"):
        load_config(None, {"social.time_dim": 15})  # the offsetnet's sinusoidal encoding needs an even width
    assert load_config(None, {"social.time_dim": 14}).social.time_dim == 14
    chosen = {n: s for n, s in specs.items() if s.choices}
    assert {"speech.encoder", "render.backend"} <= set(chosen)
    for name, spec in chosen.items():
        assert spec.default in spec.choices, name
        with pytest.raises(ConfigError, match=rf"'{name}' must be one of"):
            load_config(None, {name: "no-such-choice"})
    with pytest.raises(ConfigError, match="render.background"):
        load_config(None, {"render.background": [1.0, 1.0]})
    # every default satisfies its own metadata, and every field says what it is
    for name, spec in specs.items():
        assert spec.check(spec.default) is None, name
        assert spec.description, name
