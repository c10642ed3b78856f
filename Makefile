# The two commands a user types: `make demo` and `make test`.
# Both create .venv/ in the repository root and install everything pinned.

PYTHON ?= python3
VENV   := .venv
REF    := .venv-ref
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -qq -c requirements/constraints.txt
REQS   := pyproject.toml requirements/constraints.txt requirements/test.txt requirements/vocab.txt

.PHONY: demo test lint venv clean system-packages site-runtime

demo: $(VENV)/.installed
	$(BIN)/vestis demo

# System packages first, so that what cannot be installed is said on the first line.
test: system-packages $(VENV)/.installed $(REF)/.installed site-runtime
	$(BIN)/ruff check vestis tests benchmarks scripts
	$(BIN)/ruff format --check vestis tests benchmarks scripts
	$(BIN)/python -m pytest -q

# Installs requirements/system.txt where it can (root + apt-get), else says what is skipped.
system-packages:
	@bash scripts/system-packages.sh

# onnxruntime-web for `vestis export site`: npm pack of the pinned version, integrity-checked, into
# ~/.cache/vestis/npm/ (once; the export then copies it offline). Without npm the site tests skip.
site-runtime: $(VENV)/.installed
	@$(BIN)/python scripts/fetch_onnxruntime_web.py || echo "onnxruntime-web not fetched: the static-site tests will be skipped"

lint: $(VENV)/.installed
	$(BIN)/ruff check vestis tests benchmarks scripts

venv: $(VENV)/.installed

$(VENV)/.installed: $(REQS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -r requirements/test.txt -e .
	$(PIP) --no-deps -r requirements/vocab.txt
	touch $@

# Side environment for the open_clip reference (see tests/reference/open_clip_ref.py).
$(REF)/.installed: $(VENV)/.installed requirements/reference.txt
	$(PYTHON) -m venv $(REF)
	$(BIN)/python -c "import site; print(site.getsitepackages()[0])" \
	  > "$$($(REF)/bin/python -c 'import site; print(site.getsitepackages()[0])')/vestis-main-venv.pth"
	$(REF)/bin/pip install --disable-pip-version-check -qq --no-deps -r requirements/reference.txt
	touch $@

clean:
	rm -rf $(VENV) $(REF)
