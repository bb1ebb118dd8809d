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
