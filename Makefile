# FaceEdit: `make demo` and `make test` set everything up on a fresh machine.
PY ?= python3.11
VENV := .venv
BVENV := .venv-blender
STAMP := $(VENV)/.installed
BSTAMP := $(BVENV)/.installed

.PHONY: demo test venv venv-blender addon bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv-blender: $(BSTAMP)

$(BSTAMP):
	@test -x $(BVENV)/bin/python || $(PY) -m venv $(BVENV)
	$(BVENV)/bin/python -m pip install -q 'bpy==5.0.1' pytest
	@touch $(BSTAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m faceedit_core.cli demo --out out/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf out build dist *.egg-info
