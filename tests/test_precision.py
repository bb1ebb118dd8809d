"""Run-time precision and memory-format choices (reidlab.engine.precision), on CPU."""
import pytest
import torch

from reidlab.engine import precision


@pytest.fixture
def support(monkeypatch):
    """Pretend the CPU's bf16 support is ``value``."""
    def set_support(value: str):
        monkeypatch.setattr(precision, "cpu_bf16_support", lambda: value)
    return set_support


@pytest.mark.parametrize("kind,expected", [("native", torch.bfloat16), ("emulated", None), ("none", None)])
def test_auto_picks_bf16_only_on_cpus_that_run_it_natively(support, kind, expected):
    support(kind)
    assert precision.resolve_amp("auto", torch.device("cpu")) == expected
    assert precision.resolve_amp("auto", "cpu") == expected


def test_explicit_modes_on_cpu(support):
    support("emulated")
    assert precision.resolve_amp("off", "cpu") is None
    assert precision.resolve_amp("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="fp16.*needs CUDA"):
        precision.resolve_amp("fp16", "cpu")
    with pytest.raises(ValueError, match="unknown 'half'"):
        precision.resolve_amp("half", "cpu")


def test_channels_last_on_cpu_only_with_native_bf16(support):
    support("native")
    assert precision.use_channels_last(True, "cpu", torch.bfloat16)
    assert not precision.use_channels_last(True, "cpu", None)  # float32: measured level
    assert not precision.use_channels_last(False, "cpu", torch.bfloat16)  # not asked
    support("emulated")
    assert not precision.use_channels_last(True, "cpu", torch.bfloat16)


def test_cpu_bf16_support_matches_the_cpu_flags():
    precision.cpu_bf16_support.cache_clear()
    kind = precision.cpu_bf16_support()
    assert kind in ("native", "emulated", "none")
    flags = precision.cpu_flags()
    if flags and kind != "none":
        assert (kind == "native") == any(f in flags for f in precision.NATIVE_BF16_FLAGS)


def test_bf16_autocast_step_on_cpu_tensors_is_close_to_float32():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    x = torch.randn(2, 3, 8, 8)
    expected = layer(x)
    dtype = precision.resolve_amp("bf16", "cpu")
    with torch.autocast("cpu", dtype=dtype):
        got = layer(x)
    assert got.dtype in (torch.bfloat16, torch.float32)
    assert (got.float() - expected).abs().max() < 0.05 * expected.abs().max()
