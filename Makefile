# FaceEdit: `make demo` and `make test` set everything up on a fresh machine.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench eval clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m faceedit_core.cli demo --out out/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

eval: $(STAMP)
	$(VENV)/bin/python benchmarks/eval_preview.py --out docs/evaluation.md

clean:
	rm -rf out build dist *.egg-info
