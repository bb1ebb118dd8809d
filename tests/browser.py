"""Browser-test harness: a notebook run in JupyterLab in a real headless Chromium.

    from tests.browser import run_notebook_in_browser, move_slider
    result = run_notebook_in_browser("notebooks/00_tour.ipynb", change=move_slider(steps=3), work_dir=tmp_path)
    assert result.redrew and not result.widget_errors and not result.console_errors
    result.screenshot            # PNG under work_dir

What it does: starts JupyterLab on 127.0.0.1 (a free port, a random token, config / data /
runtime / IPython dirs under ``work_dir``, ``--no-browser``, ``--allow-root``, announcements
and update checks off so nothing reaches the network), opens the notebook in Debian's
Chromium (``/usr/bin/chromium``) through Playwright for Python (``executable_path``; never
``playwright install``, which downloads a browser), runs all cells, waits for the kernel,
reads the data of the plotly figures on the page, calls ``change(page)`` (e.g. moves an
ipywidgets slider), reads them again, takes a screenshot, and stops the server by its
process id. The browser's console errors and page errors are collected.

When Chromium or Playwright is missing this raises :class:`BrowserUnavailable` with what to
install; the tests turn that into a failure, not a skip.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CHROMIUM = os.environ.get("REIDLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
WIDGET_ERROR = "Error displaying widget"


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright is not installed; the message says what to install."""


def check_browser() -> None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        raise BrowserUnavailable(f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` "
                                 "(or set REIDLAB_CHROMIUM to a Chromium binary); never `playwright install`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise BrowserUnavailable("Playwright for Python is missing: pip install playwright "
                                 "(the dev extra; the browser itself is Debian's chromium)") from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LabServer:
    process: subprocess.Popen
    port: int
    token: str
    root: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, notebook: str | Path) -> str:
        rel = Path(notebook).resolve().relative_to(self.root.resolve()).as_posix()
        return f"http://127.0.0.1:{self.port}/lab/tree/{rel}?token={self.token}&reset"

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server by its process id (SIGTERM, then SIGKILL); its kernels go with it."""
        if self.process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait()


def start_jupyterlab(root: str | Path, work_dir: str | Path, timeout: float = 90.0) -> LabServer:
    """JupyterLab serving ``root`` on 127.0.0.1; its config, data, runtime and IPython dirs under ``work_dir``."""
    root, work_dir = Path(root).resolve(), Path(work_dir).resolve()
    dirs = {name: work_dir / "jupyter" / name for name in ("config", "data", "runtime", "ipython")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    settings = work_dir / "jupyter" / "config" / "lab" / "user-settings" / "@jupyterlab"
    _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})  # no "get notified about news?" toast
    _write_json(settings / "notebook-extension" / "tracker.jupyterlab-settings",
                {"autoStartDefaultKernel": True})  # no "Select Kernel" dialog
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
           "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "IPYTHONDIR": str(dirs["ipython"]),
           "JUPYTER_PLATFORM_DIRS": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log = work_dir / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        "--port-retries=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
        "--LabApp.workspaces_dir=" + str(work_dir / "jupyter" / "workspaces"),
        "--ServerApp.shutdown_no_activity_timeout=600",  # a server left behind by a crash stops itself
    ]
    process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=root)
    server = LabServer(process, port, token, root, log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"JupyterLab did not answer on port {port} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@dataclass
class BrowserResult:
    screenshot: Path
    figures_before: list[dict]  # per plotly figure on the page: {"x": [...], "y": [...]} of its traces
    figures_after: list[dict]
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    widget_errors: int = 0  # occurrences of "Error displaying widget"
    cell_errors: list[str] = field(default_factory=list)  # error outputs of the executed cells
    text: str = ""

    @property
    def redrew(self) -> bool:
        """True when some figure's data changed after ``change``."""
        return bool(self.figures_before) and self.figures_before != self.figures_after


_FIGURE_DATA_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div =>
    (div.data || []).map(trace => ({type: trace.type || 'scatter',
        x: trace.x ? Array.from(trace.x).slice(0, 200) : null,
        y: trace.y ? Array.from(trace.y).slice(0, 200) : null,
        z: trace.z ? JSON.stringify(trace.z).slice(0, 2000) : null})))"""

_BUSY_JS = """() => {
    const prompts = Array.from(document.querySelectorAll('.jp-Notebook .jp-InputPrompt'));
    const busy = prompts.some(p => p.textContent.includes('*'));
    const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
    const indicatorBusy = status ? status.getAttribute('data-status') === 'busy' : false;
    return busy || indicatorBusy;
}"""


def figure_data(page) -> list:
    return page.evaluate(_FIGURE_DATA_JS)


def wait_idle(page, timeout: float = 300.0) -> None:
    """Wait until no cell shows ``[*]`` (three quiet checks in a row)."""
    deadline, quiet = time.time() + timeout, 0
    while time.time() < deadline:
        quiet = 0 if page.evaluate(_BUSY_JS) else quiet + 1
        if quiet >= 3:
            return
        page.wait_for_timeout(500)
    raise TimeoutError(f"the notebook was still running after {timeout:.0f} s")


def accept_kernel_dialog(page, timeout: float = 5.0) -> None:
    """Click "Select" when JupyterLab asks which kernel to start."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=timeout * 1000)
    except Exception:  # no dialog: the kernel started by itself
        return
    dialog.locator("button", has_text="Select").click()


def wait_kernel_idle(page, timeout: float = 120.0) -> None:
    """Wait until the notebook's kernel has started and is idle (the toolbar's kernel status)."""
    page.wait_for_function("""() => {
        const s = document.querySelector('.jp-Notebook-ExecutionIndicator');
        const name = document.querySelector('.jp-KernelName, .jp-Toolbar-kernelName');
        return s && s.getAttribute('data-status') === 'idle' && name && !/No Kernel/.test(name.textContent);
    }""", timeout=timeout * 1000)


def run_all_cells(page) -> None:
    """Run > Run All Cells, through the menu as a person would."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def move_slider(steps: int = 3, index: int = 0) -> Callable:
    """A ``change`` that moves the ``index``-th ipywidgets slider by ``steps`` with the arrow keys."""

    def change(page) -> None:
        handle = page.locator(".jupyter-widgets .noUi-handle").nth(index)
        handle.scroll_into_view_if_needed()
        handle.click()
        key = "ArrowRight" if steps > 0 else "ArrowLeft"
        for _ in range(abs(steps)):
            page.keyboard.press(key)
            page.wait_for_timeout(100)

    return change


def run_notebook_in_browser(path: str | Path, change: Callable | None = None, work_dir: str | Path | None = None,
                            root: str | Path | None = None, timeout: float = 300.0,
                            viewport: tuple[int, int] = (1280, 900)) -> BrowserResult:
    """Open ``path`` in JupyterLab in headless Chromium, run all cells, apply ``change(page)``, and report.

    ``root``: the folder JupyterLab serves (default: the notebook's folder). ``work_dir``: where the
    server's dirs, its log and the screenshot go (default: a folder beside the notebook).
    """
    check_browser()
    from playwright.sync_api import sync_playwright

    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"notebook not found: {path}")
    root = Path(root).resolve() if root else path.parent
    work_dir = Path(work_dir or path.parent / f".browser-{path.stem}").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []
    page_errors: list[str] = []
    server = start_jupyterlab(root, work_dir)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
                page.on("console", lambda m: console_errors.append(f"{m.text} @ {m.location.get('url', '')}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda err: page_errors.append(str(err)))
                page.goto(server.url(path), wait_until="domcontentloaded", timeout=120_000)
                page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
                accept_kernel_dialog(page)
                wait_kernel_idle(page)
                run_all_cells(page)
                page.wait_for_timeout(1000)
                wait_idle(page, timeout)
                page.wait_for_timeout(1500)  # widgets and figures render after the kernel is idle
                before = figure_data(page)
                if change is not None:
                    change(page)
                    deadline = time.time() + 30
                    while time.time() < deadline and figure_data(page) == before:
                        page.wait_for_timeout(250)
                    wait_idle(page, timeout)
                    page.wait_for_timeout(1000)
                after = figure_data(page)
                screenshot = work_dir / f"{path.stem}.png"
                page.screenshot(path=str(screenshot), full_page=False)
                text = page.locator(".jp-Notebook").inner_text()
                cell_errors = [e.inner_text()[:500] for e in page.locator(
                    ".jp-Notebook .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all()
                    if "Traceback" in e.inner_text() or "Error" in e.inner_text()[:200]]
            finally:
                browser.close()
    finally:
        server.stop()
    return BrowserResult(screenshot=screenshot, figures_before=before, figures_after=after,
                         console_errors=console_errors, page_errors=page_errors,
                         widget_errors=text.count(WIDGET_ERROR), cell_errors=cell_errors, text=text)


def write_widget_notebook(path: str | Path) -> Path:
    """A small notebook: an ipywidgets slider that sets the frequency of a sine drawn in a plotly FigureWidget."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A slider and a figure\nMoving the slider redraws the sine."),
        nbformat.v4.new_code_cell(
            "import numpy as np\nimport ipywidgets as widgets\nimport plotly.graph_objects as go\n"
            "x = np.linspace(0, 1, 50)\n"
            "figure = go.FigureWidget(go.Scatter(x=x, y=np.sin(2 * np.pi * x), mode='lines'))\n"
            "figure.update_layout(width=500, height=300, title='frequency 1')\n"
            "slider = widgets.IntSlider(value=1, min=1, max=10, description='frequency')\n"
            "def redraw(change):\n"
            "    with figure.batch_update():\n"
            "        figure.data[0].y = np.sin(2 * np.pi * change['new'] * x)\n"
            "        figure.layout.title.text = f\"frequency {change['new']}\"\n"
            "slider.observe(redraw, names='value')\n"
            "widgets.VBox([slider, figure])"),
    ]
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    path = Path(path)
    path.write_text(json.dumps(nb, indent=1))
    return path


def describe(result: BrowserResult) -> str:
    """A short text of what went wrong, for assertion messages."""
    return json.dumps({"console_errors": result.console_errors[:10], "page_errors": result.page_errors[:10],
                       "widget_errors": result.widget_errors, "cell_errors": result.cell_errors[:5],
                       "figures_before": str(result.figures_before)[:300],
                       "figures_after": str(result.figures_after)[:300], "screenshot": str(result.screenshot)},
                      indent=1)


__all__ = ["BrowserResult", "BrowserUnavailable", "LabServer", "check_browser", "describe", "figure_data",
           "move_slider", "run_all_cells", "run_notebook_in_browser", "start_jupyterlab", "wait_idle",
           "write_widget_notebook"]
