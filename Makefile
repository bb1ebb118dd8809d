# The set-up commands of the README: `make demo`, `make test`, `make notebooks`, `make lab`.
# Each bootstraps a local .venv when it is missing (pip only; conda users see environment.yml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidlab-installed
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NBVAL := --nbval --nbval-sanitize-with notebooks/nbval_sanitize.cfg
# Stored notebook outputs are made and checked under reidlab.pin (reidlab/pin.py, the one place that
# says how): float32, every library's kernels pinned to AVX2, one thread. So the numbers repeat on
# any x86-64 CPU with AVX2, whatever else it has (AVX-512, native bf16, AMX) and whatever its cores.
PINNED := $(PY) -m reidlab.pin

.PHONY: demo test notebooks zoo chromium lab bench venv clean-venv ablation-demo dashboard-records

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[notebooks,dev]'
	@touch $(STAMP)

# The tour and one training run through papermill -> runs/demo/ (executed notebooks + HTML).
demo: $(STAMP)
	$(PY) -m reidlab.demo

# The notebooks' trained models (runs/notebooks/, cached: a second call only checks them), trained
# under reidlab.pin in child processes.
zoo: $(STAMP)
	$(PY) -m reidlab.zoo

# The browser tests drive Debian's chromium through Playwright (never `playwright install`); the pin's
# test runs a probe on an emulated AVX2-only AMD CPU with Debian's qemu-user.
chromium:
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) missing: installing Debian's chromium with apt-get (browser tests)"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }
	@command -v qemu-x86_64 >/dev/null || { echo "qemu-x86_64 missing: installing Debian's qemu-user (the pin's test)"; \
		$(SUDO) apt-get install -y --no-install-recommends qemu-user || { $(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends qemu-user; }; }

# Unit tests (browser tests included), then every notebook re-executed under strict nbval
# (stored outputs compared, not the lax mode).
test: $(STAMP) zoo chromium
	$(PY) -m pytest -q -p no:cacheprovider tests
	$(PINNED) $(PY) -m pytest -q -p no:cacheprovider $(NBVAL) $(wildcard notebooks/[0-9]*.ipynb)

# Re-execute every notebook in place (stored outputs), after the zoo.
notebooks: $(STAMP) zoo
	cd notebooks && for nb in [0-9]*.ipynb; do echo "== $$nb"; \
		../$(PY) -m reidlab.pin ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.store_widget_state=False $$nb || exit 1; done

# MBGN Table 2 on the synthetic data, short schedule, two seeds, on the embedded Dask cluster
# (re-running skips finished runs); notebooks/11_ablation_dashboard.ipynb shows it with
# batch_dir='../runs/ablation/mbgn-table2'.
ablation-demo: $(STAMP)
	$(PY) -m reidlab.cli ablate mbgn-table2 --seeds 2 --epochs 4 --steps-per-epoch 25 --output-dir runs/ablation/mbgn-table2

# The records the dashboard notebook ships (results, configs, logs; no checkpoints): make ablation-demo's
# batch and the pretrained Table 2 batch of the README (its command there).
dashboard-records: $(STAMP)
	$(PY) -m reidlab.cli ablate --output-dir runs/ablation/mbgn-table2 --export-records notebooks/ablation-demo/mbgn-table2
	$(PY) -m reidlab.cli ablate --output-dir runs/ablation/mbgn-table2-pretrained --export-records notebooks/ablation-demo/mbgn-table2-pretrained

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
