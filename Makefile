# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The quick demo profile: the same pipeline and code path as the seed recipe, fewer epochs.
# `++` because the model blocks do not list `epochs` until overridden.
DEMO_OVERRIDES := -S ++basic.epochs=8 -S ++vgg.epochs=3

.PHONY: venv demo test fast lint

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip uninstall -q -y fer 2>/dev/null || true  # this project's old name (before ferkit)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# DVC runs each stage's `fer ...` command through the shell, so the venv must be on PATH.
# `dvc exp run -S` rewrites params.yaml without its comments, so the file is put back afterwards:
# the demo is recorded as an experiment (`dvc exp show`), and params.yaml stays the seed recipe.
demo: $(STAMP)
	@cp params.yaml .params.yaml.before-demo
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run $(DEMO_OVERRIDES); status=$$?; \
	mv .params.yaml.before-demo params.yaml; exit $$status
	$(BIN)/dvc metrics show metrics/basic_train.json metrics/vgg_train.json

# ruff over the Python; actionlint over .github/workflows (the CI for forks, docs/ci.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/actionlint

# pytest exits 5 when it collects nothing; that is a failure here, not a pass.
test: lint
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# The quick loop while editing: lint and every test but the end-to-end `slow` ones (about a minute).
fast: lint
	$(BIN)/python -m pytest -m "not slow"
