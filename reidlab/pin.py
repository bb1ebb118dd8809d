"""Stored numbers that repeat on any x86-64 CPU with AVX2: the one place where kernels are pinned.

Everything whose output is stored and compared (the notebooks' outputs under strict nbval, the
notebook zoo of :mod:`reidlab.zoo`, ``make notebooks``) runs in float32 with the kernel choice
pinned to one instruction set and a fixed thread count. Users' own runs are not pinned: they keep
``amp="auto"`` (bf16 where the CPU runs it natively) and the fastest kernels of their CPU.

Each library picks its kernels by the CPU it finds, so one variable per library (each measured
on torch 2.14.1 to change the result when set, ``tests/test_pin.py``):

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised kernels (elementwise ops, reductions,
  softmax, involution's unfold/multiply/sum) use AVX2 even on an AVX-512 CPU.
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (PyTorch's fp32 convolutions) uses its AVX2 kernels.
- ``MKL_CBWR=COMPATIBLE``: MKL's GEMM (linear layers, matmul, bmm) takes its reproducible SSE2
  branch. Its ``AVX2`` branch holds only on Intel CPUs: on AMD, MKL falls back to its automatic
  branch (MKL's documentation says so; measured here under ``qemu-x86_64 -cpu EPYC-Rome``, where
  ``AVX2`` gave another result and ``COMPATIBLE`` the same bits as this Intel host).
- ``OPENBLAS_CORETYPE=Haswell``: numpy's and scipy's OpenBLAS (t-SNE, PCA) use their AVX2 kernels.
  Left as it is where the machine already sets it (some machines set it to avoid broken kernels).
- ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``: float sums depend on how work
  is split between threads, so the count is fixed (1 for the notebooks, :data:`reidlab.zoo.ZOO_THREADS`
  for the zoo's training).
- ``REIDLAB_PINNED=1``: :func:`reidlab.engine.precision.resolve_amp` resolves ``amp="auto"`` to
  float32, whatever the CPU offers.

The libraries read these once, when they first dispatch a kernel, so they must be in the
environment before the process starts: ``python -m reidlab.pin COMMAND ...`` runs a command under
them (the Makefile's ``make notebooks`` and ``make test`` do), and :mod:`reidlab.zoo` trains in a
child process started with :func:`pinned_env`.

    python -m reidlab.pin pytest --nbval notebooks/02_gsrpa.ipynb    # check a notebook as make test does
    python -m reidlab.pin --threads 2 python -m reidlab.zoo          # what the zoo's child processes get
"""
from __future__ import annotations

import os
import sys

PIN_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "REIDLAB_PINNED": "1",
}
# Set only where the machine has not set it already (see the module docstring).
PIN_ENV_DEFAULTS: dict[str, str] = {"OPENBLAS_CORETYPE": "Haswell"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# The capability torch reports under the pin (torch.backends.cpu.get_cpu_capability()).
PINNED_CAPABILITY = "AVX2"


def pinned_env(threads: int = 1, base: dict | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the pin and ``threads`` threads."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    env = dict(os.environ if base is None else base)
    env.update(PIN_ENV)
    for key, value in PIN_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    env.update({key: str(threads) for key in THREAD_VARIABLES})
    return env


def is_pinned() -> bool:
    """Whether this process runs under the pin (its variables set, and torch's kernels on AVX2)."""
    if any(os.environ.get(key) != value for key, value in PIN_ENV.items()):
        return False
    if "torch" in sys.modules:
        import torch

        return torch.backends.cpu.get_cpu_capability() == PINNED_CAPABILITY
    return True


def describe() -> str:
    """One line: whether this process is pinned, its kernels and threads (for logs and notebooks)."""
    import torch

    state = "pinned" if is_pinned() else "not pinned"
    return (f"{state}: torch kernels {torch.backends.cpu.get_cpu_capability()}, "
            f"oneDNN max ISA {os.environ.get('ONEDNN_MAX_CPU_ISA', 'native')}, "
            f"MKL branch {os.environ.get('MKL_CBWR', 'auto')}, {torch.get_num_threads()} thread(s)")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m reidlab.pin", description="Run a command with the kernel choice pinned to AVX2, "
        "float32 for amp='auto' and a fixed thread count: the environment of every stored output.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the command (default: 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("give a command to run, e.g. python -m reidlab.pin pytest --nbval notebooks/00_tour.ipynb")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    try:
        os.execvpe(args.command[0], args.command, pinned_env(args.threads))
    except OSError as error:
        print(f"reidlab.pin: cannot run {args.command[0]!r}: {error.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
