"""Notebooks in a real browser: JupyterLab + headless Chromium (Debian's `chromium`) driven by
Playwright, through the harness in tests/browser.py. A missing browser is a failure that says
what to install, not a skip."""
from __future__ import annotations

import pytest

from tests.browser import BrowserUnavailable, check_browser, describe, move_slider, run_notebook_in_browser, \
    write_widget_notebook


@pytest.fixture(scope="module")
def browser_available():
    try:
        check_browser()
    except BrowserUnavailable as err:
        pytest.fail(str(err))


def test_widget_slider_redraws_plotly_figure_in_chromium(browser_available, tmp_path):
    notebook = write_widget_notebook(tmp_path / "slider.ipynb")
    result = run_notebook_in_browser(notebook, change=move_slider(steps=3), work_dir=tmp_path / "browser")
    assert result.screenshot.exists() and result.screenshot.stat().st_size > 10_000, describe(result)
    assert result.figures_before, "no plotly figure on the page\n" + describe(result)
    assert result.redrew, "the figure did not redraw after the slider moved\n" + describe(result)
    before, after = result.figures_before[0][0], result.figures_after[0][0]
    assert before["x"] == after["x"] and before["y"] != after["y"]  # same grid, a new sine (frequency 4)
    assert after["y"][1] == pytest.approx(__import__("math").sin(2 * __import__("math").pi * 4 / 49), abs=1e-6)
    assert result.widget_errors == 0, describe(result)
    assert not result.cell_errors, describe(result)
    assert not result.page_errors and not result.console_errors, describe(result)


# ----------------------------------------------------------------------------- the ablation dashboard (issue 12)
def test_ablation_dashboard_query_slider_redraws_in_chromium(browser_available, synthetic_root, synthetic_split,
                                                             tmp_path):
    """notebooks/11_ablation_dashboard.ipynb on a tiny batch: run all cells, move the query slider of the
    run comparison; the attention maps redraw for the new query, with no widget, console or cell error."""
    import json
    from pathlib import Path

    from conftest import make_tiny_batch

    batch = make_tiny_batch(tmp_path / "batch", synthetic_root, synthetic_split)
    source = Path(__file__).resolve().parents[1] / "notebooks" / "11_ablation_dashboard.ipynb"
    book = json.loads(source.read_text())
    cell = next(c for c in book["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = "".join(cell["source"]) + f"\nbatch_dir = {str(batch)!r}  # the test's tiny batch\n"
    for c in book["cells"]:  # run it fresh
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    notebook = tmp_path / "site" / "11_ablation_dashboard.ipynb"
    notebook.parent.mkdir()
    notebook.write_text(json.dumps(book))
    result = run_notebook_in_browser(notebook, change=move_slider(steps=2), work_dir=tmp_path / "browser",
                                     timeout=400)
    assert result.screenshot.exists() and result.screenshot.stat().st_size > 10_000, describe(result)
    assert not result.cell_errors and result.widget_errors == 0, describe(result)
    assert "Baseline+GSRPA s0" in result.text and "query 0: id" in result.text, describe(result)
    assert result.redrew, "the run comparison did not redraw after the query slider moved\n" + describe(result)
    heat_before = [t["z"] for fig in result.figures_before for t in fig if t["type"] == "heatmap"]
    heat_after = [t["z"] for fig in result.figures_after for t in fig if t["type"] == "heatmap"]
    assert len(heat_before) == len(heat_after) and heat_before != heat_after, describe(result)
    assert not result.page_errors and not result.console_errors, describe(result)


# ----------------------------------------------------------------------------- notebooks 01 and 02
NOTEBOOKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks"

_ANIMATION_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(div => div._transitionData && div._transitionData._frames && div._transitionData._frames.length)
    .map(div => ({frames: div._transitionData._frames.map(f => (f.data || []).map(t => t.type || 'scatter')),
                  data: (div.data || []).map(t => t.type || 'scatter'),
                  images: div.querySelectorAll('.layer-above image, .imagelayer image, g.im image').length}))"""


def _slider_change(index: int, steps: int, state: dict, play: bool = False):
    """Move the ``index``-th slider on the page; with ``play``, first press every animation's play
    button and record the animated figures' frames and drawn images after it."""

    def change(page) -> None:
        if play:
            state["before_play"] = page.evaluate(_ANIMATION_JS)
            buttons = page.locator(".js-plotly-plot .updatemenu-button")
            for k in range(buttons.count()):
                buttons.nth(k).scroll_into_view_if_needed()
                buttons.nth(k).click()
            page.wait_for_timeout(4000)  # the frames play (600 ms each)
            state["after_play"] = page.evaluate(_ANIMATION_JS)
        move_slider(steps=steps, index=index)(page)

    return change


def _assert_clean(result) -> None:
    assert result.screenshot.exists() and result.screenshot.stat().st_size > 10_000, describe(result)
    assert result.widget_errors == 0, describe(result)
    assert not result.cell_errors, describe(result)
    assert not result.page_errors and not result.console_errors, describe(result)


def _heatmaps(figures) -> list:
    return [trace["z"] for figure in figures for trace in figure if trace["type"] == "heatmap"]


def test_aabs_notebook_in_chromium(browser_available, tmp_path):
    """01_aabs: run all cells; play the AABS animation (the image stays on every frame and on the
    page); move the image picker of the AABS panel: the panel redraws with the other image's planes."""
    state: dict = {}
    result = run_notebook_in_browser(NOTEBOOKS / "01_aabs.ipynb", change=_slider_change(0, 2, state, play=True),
                                     work_dir=tmp_path / "browser", timeout=600)
    _assert_clean(result)
    assert result.redrew, "the AABS panel did not redraw after the image slider moved\n" + describe(result)
    animations = state["after_play"]
    assert animations, "no animated figure (frames) on the page\n" + describe(result)
    for figure in state["before_play"] + animations:
        assert figure["frames"] and all("image" in frame for frame in figure["frames"]), figure
        assert "image" in figure["data"], figure
    assert all(figure["images"] >= 1 for figure in animations), f"an animation lost its image: {animations}"
    # the panel now shows image 2: Algorithm 1's cosines (the bars) are that image's
    before = [t["y"] for f in result.figures_before for t in f if t["type"] == "bar"]
    after = [t["y"] for f in result.figures_after for t in f if t["type"] == "bar"]
    assert len(before) == len(after) and before != after, describe(result)


def test_gsrpa_notebook_in_chromium(browser_available, tmp_path):
    """02_gsrpa: run all cells; move the GSRPA panel's column slider (sliders in page order: the
    involution panel's image, row, col, then the GSRPA panel's image, row, col): the relation row and
    column maps redraw with the new pixel's values."""
    result = run_notebook_in_browser(NOTEBOOKS / "02_gsrpa.ipynb", change=move_slider(steps=-2, index=5),
                                     work_dir=tmp_path / "browser", timeout=600)
    _assert_clean(result)
    assert result.redrew, "the GSRPA panel did not redraw after the pixel moved\n" + describe(result)
    before, after = _heatmaps(result.figures_before), _heatmaps(result.figures_after)
    assert len(before) == len(after) and before != after, describe(result)
