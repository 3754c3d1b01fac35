# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The quick demo profile: the same pipeline and code path as the seed recipe, fewer epochs.
DEMO_OVERRIDES := -S basic.epochs=8 -S vgg.epochs=2

.PHONY: venv demo test clean-outputs

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# DVC runs each stage's `fer ...` command through the shell, so the venv must be on PATH.
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run $(DEMO_OVERRIDES)
	$(BIN)/dvc metrics show

# pytest exits 5 when it collects nothing; that is a failure here, not a pass.
test: $(STAMP)
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status
