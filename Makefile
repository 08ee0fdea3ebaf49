# Two commands on a fresh machine:  make demo  |  make test
# Each creates .venv and installs everything it needs (torch pinned to the CPU build on local disk).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: install demo test bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Train a teacher and distil it into a small student on Fashion-MNIST when Debian's
# dataset-fashion-mnist is installed, else on scikit-learn's embedded digits; print the comparison.
demo: install
	@if [ -d $(FMNIST) ]; then recipe=recipes/fmnist/demo.yaml; else recipe=recipes/digits/demo.yaml; fi; \
	run=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	echo "potstill demo: $$recipe -> $$run"; \
	$(BIN)/potstill distill $$recipe --run-dir $$run

test: install
	$(BIN)/python -m pytest -q

docs: install
	$(BIN)/python -m potstill.cli.docs > docs/recipes.md

clean:
	rm -rf $(VENV) runs .pytest_cache
