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
    paths = [p for p in sorted((REPO / "config").glob("*.yaml")) if p.name != "ros.yaml"]
    assert len(paths) >= 3  # ros.yaml is the ROS parameter file, checked by test_launch
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
    cfg = load_config(None, {"render.width": 128, "device": "cpu", "social.max_offset": 1})
    assert cfg.render.width == 128 and isinstance(cfg.social.max_offset, float)
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
