"""Process tuning at start-up (rsatalker_core/runtime.py), applied in fresh processes."""

import json
import platform
import subprocess
import sys

import pytest

from rsatalker_core.config import RuntimeConfig, load_config
from rsatalker_core.errors import ConfigError
from rsatalker_core.runtime import auto_torch_threads, tune_process

from conftest import REPO

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _in_fresh_process(code, env_extra=None, taskset_cpus=None):
    """Run ``code`` in a new interpreter (threads and mallopt are process state); its JSON stdout."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(env_extra or {})
    cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=(lambda: os.sched_setaffinity(0, taskset_cpus)) if taskset_cpus else None)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


APPLY = (
    "import json, sys; from rsatalker_core.runtime import tune_process; import torch; "
    "a = tune_process(); print(json.dumps({'threads': torch.get_num_threads(), 'alloc': a.allocator_tuned, "
    "'switch': sys.getswitchinterval(), 'cores': a.cores}))"
)


def test_auto_threads_rule(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert auto_torch_threads(1) == 1 and auto_torch_threads(2) == 1
    assert auto_torch_threads(3) == 0 and auto_torch_threads(16) == 0  # 0 = keep torch's default
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # an explicit request wins
    assert auto_torch_threads(2) == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity control")
def test_defaults_applied_on_a_two_core_process():
    out = _in_fresh_process(APPLY, taskset_cpus={0, 1} if len(__import__("os").sched_getaffinity(0)) >= 2 else None)
    assert out["cores"] <= 2
    assert out["threads"] == 1
    assert out["switch"] == pytest.approx(0.0005)
    assert out["alloc"] is GLIBC


def test_explicit_thread_count_and_switch_interval():
    code = (
        "import json, sys, torch; from rsatalker_core.config import RuntimeConfig; "
        "from rsatalker_core.runtime import tune_process; "
        "a = tune_process(RuntimeConfig(torch_threads=2, tune_allocator=False, gil_switch_interval=0.002)); "
        "print(json.dumps({'threads': torch.get_num_threads(), 'alloc': a.allocator_tuned, "
        "'switch': sys.getswitchinterval()}))"
    )
    out = _in_fresh_process(code)
    assert out == {"threads": 2, "alloc": False, "switch": pytest.approx(0.002)}


def test_config_section_and_bad_values(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runtime:\n  torch_threads: 3\n  gil_switch_interval: 0.001\n")
    rt = load_config(str(cfg)).runtime
    assert (rt.torch_threads, rt.tune_allocator, rt.gil_switch_interval) == (3, True, 0.001)
    with pytest.raises(ConfigError, match="torch_threads"):
        tune_process(RuntimeConfig(torch_threads=-1))
    with pytest.raises(ConfigError, match="gil_switch_interval"):
        tune_process(RuntimeConfig(gil_switch_interval=-0.1))


def test_cli_applies_the_config_before_running(tmp_path):
    # `rsatalker` reads runtime.* of --config: 1 thread from the file although 2 cores are asked for.
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runtime:\n  torch_threads: 1\n  gil_switch_interval: 0.003\n")
    code = (
        "import json, sys, torch; from rsatalker_core.cli import main; "
        "rc = main(['generate', '--self-audio', 'missing.wav', '--partner-audio', 'missing.wav', "
        "'--relationship', 'couple', '--out-motion', 'x.npz', '--no-video', '--config', sys.argv[1]]); "
        "print(json.dumps({'rc': rc, 'threads': torch.get_num_threads(), 'switch': sys.getswitchinterval()}))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(cfg)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"rc": 2, "threads": 1, "switch": pytest.approx(0.003)}  # rc 2: missing.wav


@pytest.mark.skipif(not GLIBC, reason="glibc allocator settings")
def test_allocator_settings_cut_page_faults():
    # Large per-iteration temporaries (like the CPU rasterizer's): with glibc's defaults each
    # is a fresh mmap that page-faults in again; with the tuning the heap reuses them.
    loop = (
        "import json, resource, numpy as np; {setup}"
        "x = np.ones(4_000_000, np.float32)\n"
        "def step():\n"
        "    y = x * 2.0; z = y + x; return float(z[::4096].sum())\n"
        "step()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20): step()\n"
        "print(json.dumps({{'faults': resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))"
    )
    plain = _in_fresh_process(loop.format(setup=""))["faults"]
    tuned = _in_fresh_process(loop.format(setup="from rsatalker_core.runtime import tune_allocator; "
                                                 "assert tune_allocator(); "))["faults"]
    # Untuned: every temporary faults in again (up to 160k 4-KiB pages here; fewer with
    # transparent huge pages, 12.5k measured); tuned: ~0.
    assert plain > 1_000 and tuned < plain / 20, (plain, tuned)
