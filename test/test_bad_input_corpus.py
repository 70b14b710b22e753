"""Bad-input corpus (issue 12): every case of benchmarks/bad_input_corpus.py is handled
cleanly. Commands (generate, evaluate, evaluate-bag, train, track, the bringup) run in this
process and must exit 2 with exactly one ``error:`` line, no traceback and nothing written;
bad ROS messages and parameters sent to one real motion node must be logged and dropped (or
refused) with the node still publishing FLAME frames afterwards."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bad_input_corpus", REPO / "benchmarks" / "bad_input_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
sys.modules["bad_input_corpus"] = corpus  # dataclasses look their module up there
_spec.loader.exec_module(corpus)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    yield corpus.make_inputs(root)
    ro = root / "readonly"
    if ro.exists():
        os.chmod(ro, 0o755)


def _command_case_names():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = corpus.make_inputs(Path(d))
        os.chmod(Path(d) / "readonly", 0o755)
        return [(c.command, c.name) for c in corpus.command_cases(p) + corpus.bringup_cases(p)]


COMMAND_CASES = _command_case_names()


def test_corpus_has_at_least_100_cases():
    assert len(COMMAND_CASES) + len(NODE_CASES) >= 100
    assert {c for c, _ in COMMAND_CASES} >= {"generate", "evaluate", "evaluate-bag", "train", "track", "bringup"}


@pytest.mark.parametrize("command,name", COMMAND_CASES, ids=[f"{c}: {n}" for c, n in COMMAND_CASES])
def test_command_case_is_clean(inputs, command, name):
    if command == "bringup":
        pytest.importorskip("rclpy")
    case = next(c for c in corpus.command_cases(inputs) + corpus.bringup_cases(inputs)
                if (c.command, c.name) == (command, name))
    clean, why = corpus.run_command(case)
    assert clean, why
    assert corpus.leftover_temporaries(inputs["root"]) == []


def _ros() -> bool:
    try:
        import rclpy  # noqa: F401
        import rsatalker.msg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def node_results():
    if not _ros():
        pytest.skip("rclpy or the rsatalker messages are not available")
    from rsatalker_ros.testing import free_domain_id

    cases = corpus.message_cases() + corpus.parameter_cases()
    return corpus.run_node_cases(cases, domain_id=free_domain_id())


NODE_CASES = [(c.command, c.name) for c in corpus.message_cases() + (corpus.parameter_cases() if _ros() else [])]


@pytest.mark.parametrize("command,name", NODE_CASES, ids=[f"{c}: {n}" for c, n in NODE_CASES])
def test_node_case_is_dropped_and_node_keeps_publishing(node_results, command, name):
    clean, why = node_results[name]
    assert clean, why
