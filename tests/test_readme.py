"""The README's "look inside" example runs as printed (on the small synthetic fixture)."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_look_inside_example_runs(synthetic_root):
    code = _block_after("## Build a model by name and look inside it")
    code = code.replace('"data/synthetic"', repr(str(synthetic_root)))
    namespace: dict = {}
    exec(compile(code, "<README: look inside>", "exec"), namespace)
    ex, mx, split = namespace["ex"], namespace["mx"], namespace["split"]
    assert ex.aabs[0].trace.shape[1:] == (2, 4)
    assert ex.structure_similarity.shape == (2, 10, 10)
    assert ex.fused_names == ["B1", "B1+B2", "B2+B3", "B3+B4", "B4+B5", "B5"]
    K = len(split.attribute_spec)
    assert mx.attribute_adjacency.shape == (2, K, K)
    assert mx.intra_attention["j1"].shape == (2, 17, 17)
    assert mx.cross_dependency["j1->j2"].shape == (2, 17, 10)
    assert torch.isfinite(mx.features).all()
