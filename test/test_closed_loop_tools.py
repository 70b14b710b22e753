"""The closed-loop tools on a head model given as a FLAME file, the path for the official
FLAME (docs/ros.md "Face tracker"): scripts/build_default_avatar.py --flame-model and
scripts/build_standin_landmark_embedding.py --flame-model --embedding. The FLAME file here is
the stand-in's arrays written as an npz, which the loader treats like an official model."""

import importlib.util
import os

import numpy as np
import pytest

from rsatalker_core.avatar.fit import LANDMARK_NAMES
from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.config import resolve_asset
from rsatalker_core.head.standin import build_standin_flame, standin_landmarks
from rsatalker_core.tracking.embedding import STANDIN_EMBEDDING_ASSET, load_embedding
from rsatalker_core.tracking.response import load_response

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(relpath: str):
    spec = importlib.util.spec_from_file_location(os.path.basename(relpath)[:-3], os.path.join(REPO, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("flame") / "flame_model.npz"
    np.savez(path, **build_standin_flame())
    return str(path)


def test_build_avatar_on_a_flame_file(flame_file, tmp_path):
    build = _script("scripts/build_default_avatar.py")
    out = str(tmp_path / "avatar.pt")
    small = ["--size", "40", "--iterations", "2", "--max-gaussians", "11000"]
    with pytest.raises(SystemExit, match="--out"):  # never over the packaged stand-in avatar
        build.main(["--flame-model", flame_file] + small)
    with pytest.raises(SystemExit, match="mesh_landmarks"):  # an official mesh's landmarks are the user's
        build.main(["--flame-model", flame_file, "--out", out] + small)
    with pytest.raises(SystemExit, match="not found|no such|missing"):
        build.main(["--flame-model", str(tmp_path / "nope.pkl"), "--out", out] + small)
    ids = [str(standin_landmarks()[n]) for n in LANDMARK_NAMES]
    assert build.main(["--flame-model", flame_file, "--out", out, "--mesh-landmarks", *ids] + small) == 0
    avatar = GaussianAvatar.load(out)
    assert avatar.meta["mesh"] == flame_file and avatar.num_triangles == 9976
    assert avatar.meta["psnr_db"] > 10.0


def test_response_on_a_flame_file_with_its_embedding(flame_file, tmp_path):
    pytest.importorskip("mediapipe")
    tool = _script("scripts/build_standin_landmark_embedding.py")
    embedding = resolve_asset(STANDIN_EMBEDDING_ASSET)  # stands in for FLAME's mediapipe_landmark_embedding.npz
    with pytest.raises(SystemExit, match="--embedding"):  # the stand-in's embedding builder is for the stand-in
        tool.main(["--flame-model", flame_file, "--response-samples", "0"])
    with pytest.raises(SystemExit, match="--response-out"):  # never over the packaged response
        tool.main(["--flame-model", flame_file, "--embedding", embedding, "--response-samples", "20"])
    out = str(tmp_path / "response.npz")
    with pytest.raises(SystemExit, match="readout_folds"):  # 4 clips can't be split in 5 folds: a clean error
        tool.main(["--flame-model", flame_file, "--embedding", embedding, "--response-samples", "40",
                   "--response-out", out])
    tool.main(["--flame-model", flame_file, "--embedding", embedding, "--response-samples", "40",
               "--readout-folds", "0", "--no-expression-readout", "--response-out", out])
    resp = load_response(out)
    assert np.array_equal(np.sort(resp.landmark_indices), np.sort(load_embedding(embedding).landmark_indices))
    assert resp.noise.shape[2] > 0 and np.isfinite(resp.static).all()
    assert resp.pose_readout is None and resp.expression_readout is None  # --readout-folds 0, --no-expression-readout
    with np.load(out) as d:
        assert flame_file in str(d["note"])  # the file says which head model it was calibrated on
