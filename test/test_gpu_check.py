"""`make gpu-check` (scripts/gpu_check.py) on a machine without CUDA.

* without CUDA it prints exactly one line saying so, exits 0 and writes nothing;
* ``--dry-run`` lists the six steps, whose commands name files that exist and run on
  CUDA with gsplat;
* the runner records every step (ok / failed / skipped, a failure does not stop the next
  step) in the markdown report, benchmark tables in full;
* the data and training steps' commands really run: the same commands with ``device=cpu``
  and the torch rasterizer build the clip and train stage 2 and stage 3 for a few steps.
"""

import importlib.util
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"
STEP_NAMES = ["parity", "render-bench", "motion-bench", "train-data", "train-stage2", "train-stage3"]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: make gpu-check would run")
def test_without_cuda_one_line_exit_0_nothing_written(tmp_path):
    out = tmp_path / "results_gpu.md"
    p = _run("--out", str(out))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and "no CUDA" in lines[0], p.stdout
    assert not out.exists()


def test_dry_run_lists_the_steps_with_existing_files(gpu_check, tmp_path):
    p = _run("--dry-run", "--out", str(tmp_path / "r.md"))
    assert p.returncode == 0, p.stderr
    listed = [line.split(":")[0].split(". ", 1)[1] for line in p.stdout.splitlines() if line[:1].isdigit()]
    assert listed == STEP_NAMES
    steps = {s.name: s for s in gpu_check.steps(str(tmp_path))}
    for step in steps.values():
        for arg in step.argv[1:]:
            if arg.endswith((".py", ".yaml")) and not arg.startswith(str(tmp_path)):
                assert (REPO / arg).is_file(), (step.name, arg)
    assert "test/test_gsplat_parity.py" in steps["parity"].argv
    assert steps["render-bench"].argv[2:6] == ["--device", "cuda", "--sizes", "256"]
    for name in ("train-stage2", "train-stage3"):
        argv = steps[name].argv
        assert "device=cuda" in argv and "render.backend=gsplat" in argv, name
        assert argv[argv.index("--stage") + 1] == name[-1]


def test_runner_records_each_step_and_writes_the_report(gpu_check, tmp_path):
    table = tmp_path / "table.md"
    py = sys.executable
    steps = [
        gpu_check.Step("fails", "exits 3", [py, "-c", "import sys; print('boom'); sys.exit(3)"]),
        gpu_check.Step("skips", "a pytest run that skipped", [py, "-c", "print('1 skipped in 0.1s')"]),
        gpu_check.Step("bench", "writes a table", [py, "-c", f"open({str(table)!r}, 'w').write('| a |\\n|---|\\n| 1 |')"],
                       table_file=str(table)),
    ]
    out = tmp_path / "sub" / "results_gpu.md"
    echoed = []
    rc = gpu_check.run_all(steps, str(out), ["- device: test"], echo=echoed.append)
    assert rc == 1  # one failed, one skipped
    text = out.read_text()
    assert "| fails | FAILED (exit 3) |" in text and "| skips | skipped |" in text and "| bench | ok |" in text
    assert "boom" in text and "| a |\n|---|\n| 1 |" in text and "- device: test" in text
    assert any("results in" in e for e in echoed)
    assert gpu_check.run_all(steps[2:], str(out), [], echo=echoed.append) == 0


def test_data_and_training_steps_run_on_cpu(gpu_check, tmp_path):
    """The commands `make gpu-check` runs on CUDA, here with device=cpu / torch rasterizer."""
    steps = [s for s in gpu_check.steps(str(tmp_path), device="cpu", backend="torch")
             if s.name in ("train-data", "train-stage2", "train-stage3")]
    out = tmp_path / "results.md"
    rc = gpu_check.run_all(steps, str(out), [], echo=lambda s: None)
    assert rc == 0, out.read_text()
    assert (tmp_path / "clip" / "gpucheck_clip_speaker2.mp4").is_file()
    assert (tmp_path / "stage2" / "avatar_stage2.pt").is_file()
    assert (tmp_path / "stage3" / "motion_stage3.pt").is_file()
    text = out.read_text()
    assert "done: step 10" in text and "done: step 5" in text
