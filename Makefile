# The two set-up commands of the README: `make demo` and `make test`.
# Each bootstraps a local .venv when it is missing (pip only; conda users see environment.yml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidlab-installed

.PHONY: demo test lab bench venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[notebooks,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m reidlab.cli demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests $(if $(wildcard notebooks/*.ipynb),--nbval-lax notebooks,)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
