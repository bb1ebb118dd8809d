"""The progress bar class every long job uses: tqdm's automatic choice (a widget in Jupyter, text in
a terminal), or text everywhere when ``REIDLAB_PROGRESS=text``. The demo sets that for the notebooks
it runs through papermill, whose kernel output it streams to the terminal, where a widget shows
nothing."""
from __future__ import annotations

import os

if os.environ.get("REIDLAB_PROGRESS") == "text":
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
