"""reidlab.pin: stored outputs in float32 with the kernel choice pinned, checked in child processes
(the libraries read the pin once, at their first kernel) through each library's own report."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidlab.pin import PIN_ENV, PINNED_CAPABILITY, THREAD_VARIABLES, pinned_env

REPO = Path(__file__).resolve().parents[1]

# A forward and backward pass through the three kinds of kernels (oneDNN convolution, MKL GEMM,
# ATen's own vectorised ops), its bits hashed.
PROBE = """
import hashlib, torch
torch.manual_seed(0)
x = torch.randn(4, 32, 16, 8, requires_grad=True)
conv, lin = torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.Linear(32 * 16 * 8, 50)
out = lin(conv(x).relu().flatten(1)).log_softmax(-1)
out.square().sum().backward()
h = hashlib.sha1()
for t in (out, x.grad, conv.weight.grad, lin.weight.grad):
    h.update(t.detach().numpy().tobytes())
print(torch.backends.cpu.get_cpu_capability(), h.hexdigest())
"""


def _run(code: str, env: dict, prefix: tuple[str, ...] = ()) -> str:
    done = subprocess.run([*prefix, sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _unpinned_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PIN_ENV and k not in THREAD_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_pinned_env_sets_every_library_and_the_threads():
    env = pinned_env(threads=2, base={"PATH": "/bin", "OPENBLAS_CORETYPE": "Zen"})
    assert {k: env[k] for k in PIN_ENV} == PIN_ENV
    assert all(env[k] == "2" for k in THREAD_VARIABLES)
    assert env["OPENBLAS_CORETYPE"] == "Zen"  # a machine's own setting is kept
    assert pinned_env(base={})["OPENBLAS_CORETYPE"] == "Haswell"
    with pytest.raises(ValueError, match="threads"):
        pinned_env(threads=0)


def test_each_library_reports_the_pinned_kernels_and_auto_is_fp32():
    code = PROBE + """
from reidlab.engine.precision import describe_amp, resolve_amp
from reidlab.pin import is_pinned
print("amp", resolve_amp("auto", "cpu"), describe_amp("auto", "cpu"), "pinned", is_pinned(), torch.get_num_threads())
"""
    out = _run(code, {**pinned_env(threads=1), "ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1"})
    assert "isa:Intel AVX2" in out, "oneDNN ignored ONEDNN_MAX_CPU_ISA"
    assert "CNR:COMPATIBLE" in out, "MKL ignored MKL_CBWR"
    assert any(line.startswith(PINNED_CAPABILITY + " ") for line in out.splitlines()), "ATen ignored ATEN_CPU_CAPABILITY"
    assert "amp None auto: fp32, pinned for stored outputs (reidlab.pin) pinned True 1" in out


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == PINNED_CAPABILITY,
                    reason="this CPU's own kernels are the pinned ones (AVX2): nothing to tell apart")
def test_the_pin_changes_the_kernels_on_a_wider_cpu():
    """On a CPU with AVX-512 the unpinned bits differ from the pinned ones: the pin is what holds
    the stored numbers, not luck."""
    pinned = _run(PROBE, pinned_env(threads=1)).split()
    native = _run(PROBE, _unpinned_env()).split()
    assert pinned[0] == PINNED_CAPABILITY and native[0] != PINNED_CAPABILITY
    assert pinned[1] != native[1]


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 not installed (Debian's qemu-user; `make test` installs it)")
def test_same_bits_on_an_emulated_amd_cpu_with_avx2_only():
    """The same probe under ``qemu-x86_64 -cpu EPYC-Rome`` (an AMD CPU with AVX2, no AVX-512, as CI's
    other machines): the pinned bits equal this host's pinned bits. About a minute (emulated)."""
    python = os.path.realpath(sys.executable)
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {**pinned_env(threads=1), "PYTHONPATH": os.pathsep.join([str(REPO), *site])}
    here = _run(PROBE, env).split()
    done = subprocess.run([QEMU, "-cpu", "EPYC-Rome", python, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    emulated = done.stdout.split()
    assert emulated[0] == PINNED_CAPABILITY
    assert emulated[1] == here[1]


def test_the_pin_command_runs_a_command_under_the_pin():
    out = subprocess.run([sys.executable, "-m", "reidlab.pin", "--threads", "3", sys.executable, "-c",
                          "import os; print(os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['OMP_NUM_THREADS'])"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and out.stdout.split() == ["AVX2", "3"]
    bad = subprocess.run([sys.executable, "-m", "reidlab.pin", "no-such-command-here"], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no-such-command-here" in bad.stderr
