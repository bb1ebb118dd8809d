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


@pytest.fixture(autouse=True)
def unpinned(monkeypatch):
    """These tests speak of users' runs: not under reidlab.pin (the suite may itself run pinned)."""
    monkeypatch.delenv("REIDLAB_PINNED", raising=False)


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


@pytest.mark.parametrize("kind,said", [("native", "auto: bf16, this CPU runs bf16 natively"),
                                       ("emulated", "auto: fp32, this CPU has no native bf16"),
                                       ("none", "auto: fp32, no bf16 kernels on this CPU")])
def test_the_precision_used_is_said_with_its_reason(support, kind, said):
    support(kind)
    assert precision.describe_amp("auto", "cpu") == said
    assert precision.describe_amp("off", "cpu") == "fp32"
    assert precision.describe_amp("bf16", "cpu") == "bf16"


def test_stored_outputs_are_fp32_under_the_pin_whatever_the_cpu(support, monkeypatch):
    support("native")
    monkeypatch.setenv("REIDLAB_PINNED", "1")
    assert precision.resolve_amp("auto", "cpu") is None
    assert precision.describe_amp("auto", "cpu") == "auto: fp32, pinned for stored outputs (reidlab.pin)"
    assert precision.resolve_amp("bf16", "cpu") == torch.bfloat16  # an explicit request is still honoured


def test_cpu_summary_names_the_cpu():
    summary = precision.cpu_summary()
    assert summary["cpu_model"] and summary["isa"] in (*precision.ISA_LEVELS, "unknown")
    assert summary["bf16"] in ("native", "emulated", "none")
    assert summary["cpu_model"] in precision.cpu_line() and summary["torch_kernels"] in precision.cpu_line()
