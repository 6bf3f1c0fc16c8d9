# FaceEdit: `make demo` and `make test` set everything up on a fresh machine.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
# Blender as a Python module (bpy 5.0.1 is built for CPython 3.11 only; about 1 GB), nothing else
BLENDER_VENV := .venv-blender
BLENDER_STAMP := $(BLENDER_VENV)/.installed

.PHONY: demo test lint venv bench eval clean blender-venv addon test-blender

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

blender-venv: $(BLENDER_STAMP)

$(BLENDER_STAMP):
	@test -x $(BLENDER_VENV)/bin/python || $(PY) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/python -m pip install -q bpy==5.0.1
	@touch $(BLENDER_STAMP)

# the installable extension zip for this platform (build_addon.py --platforms ... for others)
addon: $(STAMP) $(BLENDER_STAMP)
	$(VENV)/bin/python build_addon.py --out dist

demo: $(STAMP) addon
	$(VENV)/bin/python -m faceedit_core.cli demo --out out/demo
	$(VENV)/bin/python demo/run_blender_demo.py --zip dist --out out/demo

# lint + format check, then the whole suite, Blender tests included (tests/blender_addon/ drives bpy in .venv-blender)
test: $(STAMP) addon lint
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/python -m ruff check .
	$(VENV)/bin/python -m ruff format --check .

test-blender: $(STAMP) $(BLENDER_STAMP)
	$(VENV)/bin/python -m pytest -q tests/blender_addon

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

eval: $(STAMP)
	$(VENV)/bin/python benchmarks/eval_preview.py --out docs/evaluation.md

clean:
	rm -rf out build dist *.egg-info
