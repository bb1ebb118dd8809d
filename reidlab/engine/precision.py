"""Numeric precision and memory format for training and evaluation, chosen for the device at run time.

What was measured on this project's CPU (AMD EPYC with ``avx512_bf16``, torch 2.14, 1 thread,
forward + backward, ResNet-18 at 128x64, batch 16; ``benchmarks/bench_mbgn.py``):

- bf16 autocast: the Table 2 Baseline step 1.8x faster (567 -> 307 ms); MBGN 1.5x (1160 -> 780 ms).
  oneDNN runs bf16 convolutions and matmuls natively only where the CPU has the ``avx512_bf16``
  or ``amx_bf16`` instructions; elsewhere it emulates them and gains nothing, so ``"auto"``
  picks bf16 on CPUs with those flags and float32 on the others.
- channels_last: under bf16 the Baseline step 8% faster (307 -> 283 ms), MBGN level
  (780 vs 789 ms); in float32 level (567 vs 566 ms). So on CPU it is used only with bf16
  autocast on a native-bf16 CPU; on CUDA whenever asked (tensor cores prefer NHWC).

The trainer keeps float32 selectable: ``TrainConfig.amp="off"``.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

AMP_MODES = ("auto", "bf16", "fp16", "off")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it cannot be read, e.g. not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=None)
def cpu_bf16_support() -> str:
    """How this CPU runs bf16 in oneDNN: ``"native"`` (avx512_bf16 / amx_bf16 instructions),
    ``"emulated"`` (oneDNN accepts bf16 but converts, no gain), or ``"none"``."""
    mkldnn_bf16 = False
    try:
        mkldnn_bf16 = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private op missing in some builds
        mkldnn_bf16 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    if not mkldnn_bf16:
        return "none"
    flags = cpu_flags()
    if any(flag in flags for flag in NATIVE_BF16_FLAGS):
        return "native"
    capability = torch.backends.cpu.get_cpu_capability()  # where /proc/cpuinfo is absent: "AMX_BF16" on some builds
    return "native" if ("BF16" in capability or "AMX" in capability) else "emulated"


ISA_LEVELS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "avx")


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (the platform's processor string elsewhere)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_summary() -> dict:
    """What a speed figure was measured on: CPU model, its widest vector ISA, whether it runs bf16
    natively, and the kernels torch runs now (``AVX2`` under :mod:`reidlab.pin`)."""
    flags = cpu_flags()
    return {"cpu_model": cpu_model(), "isa": next((f for f in ISA_LEVELS if f in flags), "unknown"),
            "bf16": cpu_bf16_support(), "torch_kernels": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count()}


def cpu_line() -> str:
    """:func:`cpu_summary` in one line, for a benchmark's output and the README."""
    s = cpu_summary()
    return (f"{s['cpu_model']}, {s['cores']} cores, widest ISA {s['isa']}, bf16 {s['bf16']}, "
            f"torch kernels {s['torch_kernels']}")


def resolve_amp(mode: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.amp`` on ``device`` (None: full precision, float32).

    ``"auto"``: CUDA -> bf16 where supported, else fp16 (with a grad scaler); CPU -> bf16 where
    the CPU runs it natively (:func:`cpu_bf16_support`), else float32; under :mod:`reidlab.pin`
    (stored outputs) always float32 on CPU. ``"bf16"``: bf16 on any
    device (on a CPU without native bf16 it runs, emulated and not faster). ``"fp16"``: CUDA only.
    ``"off"``: float32.
    """
    device = torch.device(device)
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cpu" and pinned():
            return None
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_bf16_support() == "native":
            return torch.bfloat16
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError(f"TrainConfig.amp='fp16' needs CUDA (device is {device.type}); use 'bf16' or 'off'")
        return torch.float16
    raise ValueError(f"TrainConfig.amp: unknown {mode!r}; use one of {', '.join(AMP_MODES)}")


def pinned() -> bool:
    """Whether this process runs under :mod:`reidlab.pin` (``REIDLAB_PINNED=1``: stored outputs, float32)."""
    return os.environ.get("REIDLAB_PINNED") == "1"


def describe_amp(mode: str, device: torch.device | str) -> str:
    """The precision ``mode`` resolves to on ``device``, and why, in a few words:
    ``"fp32"``, ``"bf16"``, ``"auto: fp32, this CPU has no native bf16"``, ..."""
    dtype = resolve_amp(mode, device)
    name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    if mode != "auto":
        return name
    device = torch.device(device)
    if device.type == "cuda":
        why = "CUDA with bf16" if dtype == torch.bfloat16 else "CUDA without bf16"
    elif pinned():
        why = "pinned for stored outputs (reidlab.pin)"
    else:
        support = cpu_bf16_support()
        why = "this CPU runs bf16 natively" if support == "native" else \
            "this CPU has no native bf16" if support == "emulated" else "no bf16 kernels on this CPU"
    return f"auto: {name}, {why}"


def use_channels_last(requested: bool, device: torch.device | str, amp_dtype: torch.dtype | None = None) -> bool:
    """Whether to run the model and its inputs in channels_last (NHWC) memory format.

    CUDA: as ``requested``. CPU: only when ``requested`` and the step runs under bf16 autocast
    (``amp_dtype``) on a CPU with native bf16, the one case where it measured faster
    (module docstring); in float32 it measured level, so it is left off.
    """
    device = torch.device(device)
    if not requested:
        return False
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        return amp_dtype == torch.bfloat16 and cpu_bf16_support() == "native"
    return False
