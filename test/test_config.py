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


def test_every_config_yaml_loads():
    for path in (REPO / "config").glob("*.yaml"):
        if path.name in ("ros.yaml",):
            continue  # ROS parameter file, checked by test_launch
        load_config(str(path))


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


def test_sections_are_dataclasses():
    cfg = RsatalkerConfig()
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        assert dataclasses.is_dataclass(v) or isinstance(v, (str, int, float))
