"""rsatalker_core must never import rclpy or any message package."""

import ast
import subprocess
import sys

from conftest import REPO

FORBIDDEN_PREFIXES = ("rclpy", "rsatalker.msg", "rsatalker_ros", "launch", "rosidl", "builtin_interfaces")


def _is_forbidden(mod: str) -> bool:
    return mod.startswith(FORBIDDEN_PREFIXES) or mod.split(".")[0].endswith("_msgs")


def test_no_ros_imports_in_source():
    offenders = []
    files = list((REPO / "rsatalker_core").rglob("*.py"))
    assert len(files) > 5
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            offenders += [f"{path.name}: {m}" for m in mods if _is_forbidden(m)]
    assert not offenders, offenders


def test_importing_every_core_module_loads_no_ros():
    code = (
        "import importlib, pkgutil, sys, rsatalker_core\n"
        "for m in pkgutil.walk_packages(rsatalker_core.__path__, 'rsatalker_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.startswith(('rclpy', 'rsatalker.msg', 'rsatalker_ros')) or m.split('.')[0].endswith('_msgs')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
