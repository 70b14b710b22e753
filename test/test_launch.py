"""launch/rsatalker.launch.py, checked without `launch` (not installable here): the file is
parsed with `ast`, and everything it names is checked against the package.

* every executable is installed by CMakeLists.txt and is a setup.py entry point, and its
  module has a main();
* every launch argument is declared and used, and every LaunchConfiguration is declared;
* the parameter file exists, is installed, and each of its node sections names a node of
  the launch file whose executable declares every key; declaring the file's values on real
  rclpy nodes succeeds (types, ranges and choices all accepted);
* the per-node parameter dicts in the launch file name only declared parameters.
"""

import ast
import importlib
import os
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "rsatalker.launch.py"
ROS_YAML = REPO / "config" / "ros.yaml"


def _call_name(node):
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


@pytest.fixture(scope="module")
def launch_tree():
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


@pytest.fixture(scope="module")
def launch_nodes(launch_tree):
    """[{executable, name, package, dict_keys, parameters_ast}] for each Node(...) or
    LifecycleNode(...) call."""
    out = []
    for call in ast.walk(launch_tree):
        if isinstance(call, ast.Call) and _call_name(call) in ("Node", "LifecycleNode"):
            kw = {k.arg: k.value for k in call.keywords}
            keys = []
            params = kw.get("parameters")
            if isinstance(params, ast.List):
                for item in params.elts:
                    if isinstance(item, ast.Dict):
                        keys += [_const(k) for k in item.keys]
            out.append({
                "package": _const(kw.get("package")),
                "executable": _const(kw.get("executable")),
                "name": _const(kw.get("name")),
                "dict_keys": keys,
                "parameters": params,
            })
    return out


def _cmake_nodes():
    text = (REPO / "CMakeLists.txt").read_text()
    block = re.search(r"set\(RSATALKER_NODES(.*?)\)", text, re.S).group(1)
    return dict(re.findall(r'"([A-Za-z0-9_]+)=([A-Za-z0-9_.]+)"', block))


def _setup_nodes():
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NODES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no NODES dict")


def _declared_params(executable):
    from rsatalker_ros.nodes import EXECUTABLES
    from rsatalker_ros.params import parameter_names

    mod = importlib.import_module(EXECUTABLES[executable])
    return mod, set(parameter_names(mod.CONFIG_PREFIXES, mod.EXTRA_PARAMS))


def _node_of(key):
    """Node name of a parameter-file key ('/**/motion_node' -> 'motion_node')."""
    return key.rsplit("/", 1)[-1]


def test_launch_file_is_valid_python_with_generate_function(launch_tree):
    names = [f.name for f in launch_tree.body if isinstance(f, ast.FunctionDef)]
    assert "generate_launch_description" in names


def test_every_executable_is_installed_and_an_entry_point(launch_nodes):
    pytest.importorskip("rclpy")
    from rsatalker_ros.nodes import EXECUTABLES

    cmake, setup = _cmake_nodes(), _setup_nodes()
    assert launch_nodes, "launch file starts no Node"
    for n in launch_nodes:
        exe = n["executable"]
        assert n["package"] == "rsatalker"
        assert exe in cmake, f"{exe} is not installed by CMakeLists.txt (RSATALKER_NODES)"
        assert exe in setup, f"{exe} is not a setup.py entry point (NODES)"
        assert setup[exe] == f"{cmake[exe]}:main", f"{exe}: setup.py and CMakeLists.txt disagree"
        assert EXECUTABLES[exe] == cmake[exe]
        mod = importlib.import_module(cmake[exe])
        assert callable(getattr(mod, "main", None)), f"{cmake[exe]} has no main()"
    # every installed script resolves to a module with main()
    for exe, module in cmake.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), module


def test_every_launch_argument_declared_and_used(launch_tree):
    declared, used = set(), set()
    for call in ast.walk(launch_tree):
        if isinstance(call, ast.Call):
            if _call_name(call) == "DeclareLaunchArgument":
                declared.add(_const(call.args[0]))
            elif _call_name(call) == "LaunchConfiguration":
                used.add(_const(call.args[0]))
    required = {"relationship", "device", "input_source", "self_audio", "partner_audio", "params_file",
                "namespace", "use_sim_time", "log_level"}
    assert required <= declared
    assert declared == used, f"declared but unused: {declared - used}; used but undeclared: {used - declared}"


def test_parameter_files_exist_and_are_installed(launch_tree):
    # defaults like PathJoinSubstitution([share, "config", "ros.yaml"]), share = FindPackageShare("rsatalker")
    shares = [c for c in ast.walk(launch_tree) if isinstance(c, ast.Call) and _call_name(c) == "FindPackageShare"]
    assert shares and all(_const(c.args[0]) == "rsatalker" for c in shares)
    files = []
    for call in ast.walk(launch_tree):
        if isinstance(call, ast.Call) and _call_name(call) == "PathJoinSubstitution":
            files.append([_const(e) for e in call.args[0].elts[1:]])
    assert ["config", "ros.yaml"] in files and ["config", "default.yaml"] in files
    for parts in files:
        assert (REPO.joinpath(*parts)).is_file(), parts
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"install\(DIRECTORY launch config DESTINATION share/\$\{PROJECT_NAME\}\)", cmake)
    assert "config/*.yaml" in (REPO / "setup.py").read_text()


def test_parameter_file_keys_are_declared_by_their_nodes(launch_nodes):
    pytest.importorskip("rclpy")
    data = yaml.safe_load(ROS_YAML.read_text())
    by_name = {n["name"]: n for n in launch_nodes}
    for key, body in data.items():
        # '/**/<node>': the values apply in any namespace (a plain '<node>' only in the root one)
        assert key.startswith("/**/"), f"ros.yaml key '{key}' is not namespace-proof"
        section = _node_of(key)
        assert section in by_name, f"ros.yaml section '{section}' configures no node of the launch file"
        keys = set(body["ros__parameters"])
        _, declared = _declared_params(by_name[section]["executable"])
        assert keys <= declared, f"{section}: undeclared parameters {keys - declared}"
    for n in launch_nodes:
        _, declared = _declared_params(n["executable"])
        assert set(n["dict_keys"]) <= declared, f"{n['name']}: undeclared {set(n['dict_keys']) - declared}"


def test_parameter_file_values_declare_on_real_nodes(launch_nodes):
    """Load ros.yaml through rclpy's own parser and declare every node's parameters."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    from rsatalker_ros.params import ParameterSet
    from rsatalker_ros.testing import free_domain_id, localhost_env

    data = yaml.safe_load(ROS_YAML.read_text())
    exe_of = {n["name"]: n["executable"] for n in launch_nodes}
    os.environ.update(localhost_env())
    ctx = rclpy.Context()
    rclpy.init(args=["test", "--ros-args", "--params-file", str(ROS_YAML)], context=ctx,
               domain_id=free_domain_id())
    try:
        for key, body in data.items():
            section = _node_of(key)
            mod, _ = _declared_params(exe_of[section])
            node = Node(section, namespace="/robot1", context=ctx)  # '/**/' keys match in any namespace
            try:
                pset = ParameterSet(node, mod.CONFIG_PREFIXES, mod.EXTRA_PARAMS)
                pset.declare()
                for key, value in body["ros__parameters"].items():
                    assert pset.value(key) == value, f"{section}.{key}"
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def _function(launch_tree, name, env):
    """The launch file's top-level function ``name``, compiled alone with globals ``env``."""
    fn = next(n for n in launch_tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    code = compile(ast.Module(body=[fn], type_ignores=[]), str(LAUNCH), "exec")
    scope = dict(env)
    exec(code, scope)
    return scope[name]


class _Arg:
    """Stand-in for launch's LaunchConfiguration: ``perform(context)`` reads a dict."""

    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


def test_every_node_takes_namespace_sim_time_and_log_level(launch_tree, launch_nodes):
    assigns = {n.targets[0].id: n.value for n in ast.walk(launch_tree)
               if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    common = assigns["common"]
    keys = {_const(k): v for k, v in zip(common.keys, common.values)}
    assert isinstance(keys["namespace"], ast.Name) and keys["namespace"].id == "namespace"
    assert [_const(e) if isinstance(e, ast.Constant) else e.id for e in keys["ros_arguments"].elts] \
        == ["--log-level", "log_level"]
    sim = assigns["sim_time"]
    assert [_const(k) for k in sim.keys] == ["use_sim_time"]
    assert "value_type=bool" in ast.unparse(sim.values[0])  # a bool parameter, not the string 'false'
    for call in ast.walk(launch_tree):
        if isinstance(call, ast.Call) and _call_name(call) in ("Node", "LifecycleNode"):
            kw = {k.arg: k.value for k in call.keywords}
            assert isinstance(kw.get(None), ast.Name) and kw[None].id == "common", ast.unparse(call)[:80]
            assert "sim_time" in [getattr(e, "id", None) for e in kw["parameters"].elts], ast.unparse(call)[:80]
    assert launch_nodes


def test_record_argument_runs_ros2_bag_record_with_the_namespaced_session_topics(launch_tree):
    from rsatalker_core.io.session_topics import SESSION_TOPICS, session_topic_names

    defaults = {}
    for call in ast.walk(launch_tree):
        if isinstance(call, ast.Call) and _call_name(call) == "DeclareLaunchArgument":
            kw = {k.arg: k.value for k in call.keywords}
            defaults[_const(call.args[0])] = _const(kw.get("default_value"))
    assert defaults["record"] == "false" and defaults["bag_path"] == "" and defaults["namespace"] == ""
    # the recorder is an OpaqueFunction(function=_recorder) of the description
    opaque = [c for c in ast.walk(launch_tree) if isinstance(c, ast.Call) and _call_name(c) == "OpaqueFunction"]
    assert len(opaque) == 1 and ast.unparse(opaque[0].keywords[0].value) == "_recorder"
    recorder = _function(launch_tree, "_recorder", {
        "LaunchConfiguration": _Arg, "ExecuteProcess": lambda cmd, output: cmd,
        "session_topic_names": session_topic_names})
    for record in ("true", "false"):
        for path in ("", "out/session"):
            for ns in ("", "robot1", "/lab/robot1"):
                cmds = recorder({"record": record, "bag_path": path, "namespace": ns})
                if record == "false":
                    assert cmds == []
                    continue
                (cmd,) = cmds
                assert cmd[:3] == ["ros2", "bag", "record"] and cmd[cmd.index("-s") + 1] == "mcap"
                assert ("-o" in cmd) == bool(path) and (not path or cmd[cmd.index("-o") + 1] == path)
                prefix = "/" + ns.strip("/") + "/" if ns else "/"
                assert [c for c in cmd if c.startswith("/")] == [prefix + t for t in SESSION_TOPICS]
    assert not [n for n in ast.walk(launch_tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and "/" in n.value and n.value.strip("/") in SESSION_TOPICS], \
        "a topic name written into the launch file"  # ("relationship" is also an argument name)


def test_cmake_setup_py_and_executables_list_the_same_nodes():
    """Every node is installed by both routes (colcon: CMakeLists RSATALKER_NODES; pip:
    setup.py NODES) and listed in rsatalker_ros.nodes.EXECUTABLES (the bringup is no node)."""
    from rsatalker_ros.nodes import EXECUTABLES

    cmake, setup = _cmake_nodes(), _setup_nodes()
    assert {k: f"{v}:main" for k, v in cmake.items()} == setup
    assert {k: v for k, v in cmake.items() if k != "bringup"} == EXECUTABLES
    modules = {p.stem for p in (REPO / "rsatalker_ros" / "nodes").glob("*.py")} - {"__init__", "common"}
    assert {v.rsplit(".", 1)[-1] for v in EXECUTABLES.values()} == modules, "a node module is not installed"


def test_lifecycle_nodes_are_managed_by_the_launch_file(launch_tree, launch_nodes):
    """face_tracker, motion_node and render_node are launch_ros LifecycleNodes started with
    their autostart parameter false, and the launch file configures and activates each of
    them (ChangeState events) under its autostart argument (docs/ros.md "Lifecycle")."""
    calls = [c for c in ast.walk(launch_tree) if isinstance(c, ast.Call)]
    managed = {_const({k.arg: k.value for k in c.keywords}.get("executable"))
               for c in calls if _call_name(c) == "LifecycleNode"}
    assert managed == {"face_tracker", "motion_node", "render_node"}
    for n in launch_nodes:
        if n["executable"] in managed:
            assert "autostart" in n["dict_keys"], n["executable"]
    text = LAUNCH.read_text()
    for needle in ("TRANSITION_CONFIGURE", "TRANSITION_ACTIVATE", 'goal_state="inactive"', "OnStateTransition",
                   'DeclareLaunchArgument("autostart"'):
        assert needle in text, needle
