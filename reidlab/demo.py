"""``make demo``: the tour and one training run, as notebooks executed by papermill, on the synthetic data.

    python -m reidlab.demo                 # what `make demo` runs
    python -m reidlab.demo --output-dir runs/demo --epochs 2

Steps, each announced on the terminal with its progress: (1) the synthetic data (generated on
first use); (2) the notebook models the tour shows (:mod:`reidlab.zoo`, trained once in a pinned
child process and cached under ``runs/notebooks/``); (3) ``notebooks/00_tour.ipynb`` with its
defaults; (4) ``notebooks/10_train.ipynb`` (one training + evaluation run, its record in
``OUTPUT/train/results.json``; the kernel's progress bar is streamed to the terminal); (5) an
HTML export of both executed notebooks, with the plotly figures drawn (plotly.js embedded once
per page, so the files open offline); then rank-1 / mAP of the run against the chance level of a
random ranking, and the paths.
``make lab`` then opens the notebooks in JupyterLab.

The output folder is the demo's own: it must be empty or missing the first time (a folder of
yours is refused), it gets a marker (:data:`DEMO_MARKER`), and each later run replaces the files
it wrote there before (listed in :data:`DEMO_FILES`), and nothing else.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
DEMO_FILES = ("tour.ipynb", "tour.html", "train.ipynb", "train.html", "train")
DEMO_MARKER = ".reidlab-demo"  # the demo writes only into an empty folder or one holding this marker


@dataclass
class NotebookDemo:
    """What ``make demo`` runs: the README quotes these values."""

    output_dir: str = "runs/demo"
    tour_parameters: dict = field(default_factory=dict)  # 00_tour.ipynb defaults
    train_parameters: dict = field(default_factory=lambda: {
        "preset": "baseline/bnneck", "epochs": 2, "steps_per_epoch": 10, "progress": True})
    data_root: str = "data/synthetic"  # the dataset 10_train.ipynb reads (its default, from the repository root)


def notebook_to_html(notebook: str | Path, html: str | Path) -> Path:
    """Export an executed notebook to HTML with its plotly figures drawn.

    The notebooks store figures as plotly's JSON mime bundle (small, drawn by JupyterLab), which
    nbconvert's HTML does not draw; each gets a ``text/html`` rendering here (plotly.js inlined in
    the first figure only), so the page shows every figure without a network."""
    import nbformat
    import plotly.io as pio
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    first = True
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            figure = output.get("data", {}).get("application/vnd.plotly.v1+json")
            if figure is not None:
                output["data"]["text/html"] = pio.to_html(figure, include_plotlyjs=first, full_html=False,
                                                          validate=False)
                first = False
    body, _ = HTMLExporter().from_notebook_node(nb)
    html = Path(html)
    html.write_text(body, encoding="utf-8")
    return html


def _execute(notebook: Path, output: Path, parameters: dict, stream: bool = False) -> None:
    """papermill ``notebook`` -> ``output``. ``stream``: the kernel's own output (a training run's
    progress bar, as text) goes to this terminal as it comes, instead of papermill's cell bar."""
    import os

    import papermill

    print(f"   papermill {notebook.relative_to(REPO_ROOT)} -> {output}  {parameters or '(defaults)'}", flush=True)
    os.environ["REIDLAB_PROGRESS"] = "text"  # the kernel's bars as text, which papermill can pass on
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(NOTEBOOKS),
                               progress_bar=not stream, log_output=False,
                               stdout_file=sys.stdout if stream else None, stderr_file=sys.stderr if stream else None)


def tour_zoo_models(tour_parameters: dict) -> list[str]:
    """The notebook models (reidlab.zoo) the tour shows with these parameters (its defaults filled in)."""
    import papermill

    defaults = {k: v["default"].strip("\"'") for k, v in papermill.inspect_notebook(str(NOTEBOOKS / "00_tour.ipynb")).items()}
    return [str(tour_parameters.get(key, defaults[key])) for key in ("model", "msra_model")]


def run_notebook_demo(settings: NotebookDemo | None = None) -> dict:
    """Run the demo; returns ``{"rank1", "mAP", "chance_rank1", "chance_mAP", "paths"}`` (fractions)."""
    from reidlab.data.synthetic import load_synthetic
    from reidlab.engine.evaluate import chance_level

    settings = settings or NotebookDemo()
    start = time.perf_counter()
    out = (REPO_ROOT / settings.output_dir).resolve() if not Path(settings.output_dir).is_absolute() \
        else Path(settings.output_dir)
    marker = out / DEMO_MARKER
    default = (REPO_ROOT / NotebookDemo.output_dir).resolve()  # under the project's own runs/ (git-ignored)
    if out.exists() and any(out.iterdir()) and not marker.exists() and out != default:
        raise FileExistsError(f"{out} is not empty and holds no earlier demo ({DEMO_MARKER}); give a new or empty "
                              "folder with --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("reidlab demo output: `make demo` replaces its own files here (tour.*, train.*, train/)\n")
    for name in DEMO_FILES:  # the demo's own files from an earlier run; nothing else is touched
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    paths = {"tour": out / "tour.ipynb", "train": out / "train.ipynb", "run": out / "train"}

    print("1/5 data: the built-in synthetic dataset (generated on first use, about 10 s)", flush=True)
    load_synthetic(REPO_ROOT / settings.data_root)
    models = tour_zoo_models(settings.tour_parameters)
    print(f"2/5 notebook models the tour shows: {', '.join(models)} (reidlab.zoo; trained once into runs/notebooks/, "
          "loaded after)", flush=True)
    from reidlab.zoo import zoo_checkpoint

    for name in models:
        zoo_checkpoint(name)
    print("3/5 tour: notebooks/00_tour.ipynb", flush=True)
    _execute(NOTEBOOKS / "00_tour.ipynb", paths["tour"], settings.tour_parameters)
    print("4/5 train: notebooks/10_train.ipynb (one training + evaluation run; its progress below)", flush=True)
    _execute(NOTEBOOKS / "10_train.ipynb", paths["train"], {**settings.train_parameters, "output_dir": str(paths["run"])},
             stream=True)
    print("5/5 HTML export", flush=True)
    for name in ("tour", "train"):
        paths[f"{name}_html"] = notebook_to_html(paths[name], out / f"{name}.html")

    record = json.loads((paths["run"] / "results.json").read_text())
    if record.get("status") != "ok":
        raise RuntimeError(f"the training run failed: {record.get('error')} (see {paths['train']})")
    chance = chance_level(load_synthetic(REPO_ROOT / settings.data_root, generate_if_missing=False))
    metrics = record["metrics"]
    summary = {"rank1": metrics["rank1"], "mAP": metrics["mAP"], "chance_rank1": chance["rank1"],
               "chance_mAP": chance["mAP"], "paths": {k: str(v) for k, v in paths.items()}}
    preset = record["params"].get("preset") or record["params"].get("model")
    print(f"\n{preset}, {record['params']['epochs']} epochs x {record['params']['steps_per_epoch']} steps: "
          f"rank-1 {100 * metrics['rank1']:.1f}%, mAP {100 * metrics['mAP']:.1f}% "
          f"(a random ranking: rank-1 {100 * chance['rank1']:.2f}%, mAP {100 * chance['mAP']:.2f}%, "
          f"{chance['gallery_ids']} gallery ids)")
    for key in ("tour", "tour_html", "train", "train_html", "run"):
        print(f"   {key:10s} {paths[key]}")
    print(f"done in {time.perf_counter() - start:.0f} s. `make lab` opens the notebooks in JupyterLab "
          "(01 AABS, 02 GSRPA, 03 MBGN granularities, ...; notebooks/README.md lists them).")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reidlab.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=NotebookDemo.output_dir, help="where the executed notebooks, HTML "
                        "and the run go (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the run (default: 2)")
    args = parser.parse_args(argv)
    settings = NotebookDemo(output_dir=args.output_dir)
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error(f"--epochs must be at least 1, got {args.epochs}")
        settings.train_parameters["epochs"] = args.epochs
    try:
        run_notebook_demo(settings)
    except FileExistsError as error:
        print(f"python -m reidlab.demo: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
