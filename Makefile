# The course's commands. `make book` and `make test` work from a fresh clone with only
# Python >= 3.10: they create .venv, install what they need once, then do their job.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-book-dev
BENCH_STAMP := $(VENV)/.installed-bench
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help install data book test unit nbval notebooks bench lint clean

help:
	@echo "make book       build the book into _build/html (executes notebooks, with a cache)"
	@echo "make test       unit tests + strict nbval of every lesson + a book build from stored outputs"
	@echo "make data       download and verify the ISBI 2012 slices (once; lesson 09 and its tests)"
	@echo "make notebooks  re-execute every notebook in place (quick profile) so stored outputs are current"
	@echo "make bench      compare against MONAI, segmentation-models-pytorch, elasticdeform (not a test;"
	@echo "                ISBI_BUDGET=8 minutes per recipe for benchmarks/isbi_budget.py)"
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

# The 30 ISBI 2012 slices and labels, sha256-checked, into $UNET_COURSE_DATA (default
# ~/.cache/unet_course). Files already there and verified are not downloaded again.
data: $(STAMP)
	$(BIN)/python -m unet_course download isbi2012

book: $(STAMP)
	$(BIN)/jupyter-book build --all .
	@echo "The book is at _build/html/index.html"

# One pytest run: unit tests, the book-build test and every notebook compared with its stored outputs.
test: $(STAMP) data
	UNET_COURSE_PROFILE=quick $(BIN)/python -m pytest tests $(NBVAL_FLAGS) notebooks --durations=25

unit: $(STAMP)
	UNET_COURSE_PROFILE=quick $(BIN)/python -m pytest tests

nbval: $(STAMP) data
	UNET_COURSE_PROFILE=quick $(BIN)/python -m pytest $(NBVAL_FLAGS) notebooks

# While they run, the size of every figure's smallest text is logged to book/figure_text.jsonl
# (tests/test_figure_text.py checks it; benchmarks/book_legibility.py reports it per page).
notebooks: $(STAMP) data
	UNET_COURSE_PROFILE=quick UNET_COURSE_FIGURE_TEXT_LOG=$(CURDIR)/book/figure_text.jsonl \
		$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 $(NOTEBOOKS)
	$(BIN)/python benchmarks/book_legibility.py --prune

# The published elasticdeform wheel was built against NumPy 1; build it from source instead.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--no-binary elasticdeform --no-build-isolation "elasticdeform>=0.5"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	touch $@

# isbi_budget.py trains 4 recipes for ISBI_BUDGET minutes each (about 40 min in all at 8).
ISBI_BUDGET ?= 8
bench: $(BENCH_STAMP) data
	@for b in benchmarks/*.py; do echo "== $$b"; \
		if [ $$b = benchmarks/isbi_budget.py ]; then $(BIN)/python $$b --budget $(ISBI_BUDGET) || exit 1; \
		else $(BIN)/python $$b || exit 1; fi; done

lint: $(STAMP)
	$(BIN)/ruff check unet_course tests benchmarks

clean:
	rm -rf _build .pytest_cache
