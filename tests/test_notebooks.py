"""The notebooks' contract without executing them (nbval executes them in `make test`): a typed,
commented `parameters` cell that papermill reads (one parameter per line, a model parameter where a
model is shown), the equations in LaTeX, a "What to try next"; and the demo's HTML export."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
papermill = pytest.importorskip("papermill")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
MINE = {"00_tour.ipynb": "model", "01_aabs.ipynb": "model", "02_gsrpa.ipynb": "model",
        "03_mbgn_granularities.ipynb": "model"}


@pytest.mark.parametrize("name", sorted(MINE))
def test_parameters_are_typed_and_explained(name):
    parameters = papermill.inspect_notebook(str(NOTEBOOKS / name))
    assert MINE[name] in parameters
    for key, spec in parameters.items():
        assert spec["inferred_type_name"] not in ("None", "Unknown type"), (name, key, spec)
        assert spec["help"].strip(), f"{name}: parameter {key} has no comment"
    nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == len(parameters), f"{name}: one parameter per line"


@pytest.mark.parametrize("name", sorted(MINE))
def test_notebook_anatomy(name):
    nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "What to try next" in prose or "Where next" in prose
    assert "untrained" in prose and "trained" in prose
    if name != "00_tour.ipynb":
        assert "$$" in prose  # the paper's equations in LaTeX
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert "progress=True" not in cell.source, f"{name}: progress bars do not belong in stored outputs"


def test_notebook_to_html_draws_plotly_offline(tmp_path):
    from reidlab.demo import notebook_to_html

    figure = {"data": [{"type": "bar", "x": [1, 2], "y": [3, 4]}], "layout": {"title": {"text": "bars"}}}
    nb = nbformat.v4.new_notebook()
    cells = []
    for _ in range(2):
        cell = nbformat.v4.new_code_cell("figure")
        cell.outputs = [nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": figure,
                                                                     "text/plain": "Figure"})]
        cells.append(cell)
    nb.cells = cells
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, str(path))
    html = notebook_to_html(path, tmp_path / "n.html").read_text()
    assert html.count("Plotly.newPlot") == 2  # both figures drawn
    assert html.count("plotly.js v") == 1  # the library inlined once, no network
    assert '"y":[3,4]' in html.replace(" ", "")


def test_the_demo_writes_only_into_an_empty_folder_or_its_own(tmp_path, capsys):
    """Issue 19: `python -m reidlab.demo --output-dir D` replaces its own files in D; a folder of the
    user's (not empty, no demo marker) is refused in one line, untouched, before any work."""
    from reidlab.demo import DEMO_MARKER, main

    mine = tmp_path / "mine"
    (mine / "train").mkdir(parents=True)
    (mine / "train" / "notes.txt").write_text("my notes")
    (mine / "tour.html").write_text("my page")
    assert main(["--output-dir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and DEMO_MARKER in err and str(mine) in err
    assert (mine / "train" / "notes.txt").read_text() == "my notes" and (mine / "tour.html").read_text() == "my page"
    assert not (mine / DEMO_MARKER).exists()
