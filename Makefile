# The course's commands. `make book` and `make test` work from a fresh clone with only
# Python >= 3.10: they create .venv, install what they need once, then do their job.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-book-dev
BENCH_STAMP := $(VENV)/.installed-bench
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help install book test unit nbval notebooks bench lint clean

help:
	@echo "make book       build the book into _build/html (executes notebooks, with a cache)"
	@echo "make test       unit tests + strict nbval of every lesson + a book build from stored outputs"
	@echo "make notebooks  re-execute every notebook in place (quick profile) so stored outputs are current"
	@echo "make bench      compare against MONAI, segmentation-models-pytorch, elasticdeform (not a test)"
	@echo "make lint       ruff over the package, tests and benchmarks"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp is newer than pyproject.toml after a successful install, so a second run installs nothing.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[book,dev]"
	@# visdom (live curves; its tests start a real server) ships only as an old source package
	@# whose build needs pkg_resources: build it with setuptools<81 and without isolation.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "setuptools<81"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation "visdom>=0.2.4"
	touch $@

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build --all .
	@echo "The book is at _build/html/index.html"

# One pytest run: unit tests, the book-build test and every notebook compared with its stored outputs.
test: $(STAMP)
	UNET_COURSE_PROFILE=quick $(BIN)/python -m pytest tests $(NBVAL_FLAGS) notebooks

unit: $(STAMP)
	UNET_COURSE_PROFILE=quick $(BIN)/python -m pytest tests

nbval: $(STAMP)
	UNET_COURSE_PROFILE=quick $(BIN)/python -m pytest $(NBVAL_FLAGS) notebooks

notebooks: $(STAMP)
	UNET_COURSE_PROFILE=quick $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 $(NOTEBOOKS)

# The published elasticdeform wheel was built against NumPy 1; build it from source instead.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--no-binary elasticdeform --no-build-isolation "elasticdeform>=0.5"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	touch $@

bench: $(BENCH_STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check unet_course tests benchmarks

clean:
	rm -rf _build .pytest_cache
