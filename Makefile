# FaceEdit: `make demo` and `make test` set everything up on a fresh machine.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
# Blender as a Python module, one per Python a supported Blender embeds, nothing else in them:
# bpy 5.0.1 (CPython 3.11, as Blender 4.2 LTS-5.0; about 1 GB) and bpy 5.2.3 (CPython 3.13, as
# Blender 5.1-5.2 LTS; about 400 MB). bpy pins the numpy it ships with. Each installs its lock
# (requirements/blender-cp3*.txt) with --require-hashes: `make lock-blender` regenerates them.
BLENDER_VENV := .venv-blender
BLENDER_STAMP := $(BLENDER_VENV)/.installed
PY313 ?= $(shell pyenv root 2>/dev/null)/versions/3.13.0/bin/python3.13
BLENDER_VENV_313 := .venv-blender-313
BLENDER_STAMP_313 := $(BLENDER_VENV_313)/.installed

.PHONY: demo test lint venv lock lock-blender bench eval clean blender-venv blender-venv-313 blender-venvs addon addon-all test-blender

venv: $(STAMP)

# exactly the locked packages, each checked against its sha256, then the project itself (no dependency
# resolution, no build isolation: nothing unpinned is fetched). `make lock` regenerates the lock.
LOCK := requirements/lock.txt
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --require-hashes -r $(LOCK)
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# the lock from pyproject.toml (dependencies + test extra) and requirements/build.in, for CPython 3.11 on
# this machine kind, then the bpy venvs' locks; uv runs from a scratch venv outside the repository
LOCK_TOOLS ?= /tmp/faceedit-lock-tools
UV := $(LOCK_TOOLS)/bin/uv
$(UV):
	$(PY) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/python -m pip install -q uv

lock: $(UV) lock-blender
	sed -n '/^# The exact/,/^# fails while/p' $(LOCK) > $(LOCK).new
	$(UV) pip compile pyproject.toml requirements/build.in --extra test --generate-hashes \
		--python-version 3.11 --index-url https://pypi.org/simple --extra-index-url file:///opt/pypi-more/simple \
		--extra-index-url file:///opt/pypi/simple --find-links /opt/wheels -c /etc/xdg/pip/constraints.txt \
		--index-strategy unsafe-best-match --no-header >> $(LOCK).new
	mv $(LOCK).new $(LOCK)

# bpy and everything it pulls in, each with its sha256, for x86-64 Linux (the CI machine kind); uv keeps the
# versions already in a lock while the bpy pin allows them (delete the file to re-resolve from scratch)
BPY_311 := 5.0.1
BPY_313 := 5.2.3
BLENDER_LOCK := requirements/blender-cp311.txt
BLENDER_LOCK_313 := requirements/blender-cp313.txt
LOCK_BLENDER = echo bpy==$(1) | $(UV) pip compile - --generate-hashes --python-version $(2) \
	--python-platform x86_64-manylinux_2_28 --index-url https://pypi.org/simple \
	--custom-compile-command "make lock-blender" -o $(3)
lock-blender: $(UV)
	$(call LOCK_BLENDER,$(BPY_311),3.11,$(BLENDER_LOCK))
	$(call LOCK_BLENDER,$(BPY_313),3.13,$(BLENDER_LOCK_313))

blender-venv: $(BLENDER_STAMP)

$(BLENDER_STAMP): $(BLENDER_LOCK)
	@test -x $(BLENDER_VENV)/bin/python || $(PY) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/python -m pip install -q --require-hashes --only-binary=:all: -r $(BLENDER_LOCK)
	@touch $(BLENDER_STAMP)

blender-venv-313: $(BLENDER_STAMP_313)

$(BLENDER_STAMP_313): $(BLENDER_LOCK_313)
	@test -x $(PY313) || { echo "need CPython 3.13 for bpy 5.2.3: set PY313=/path/to/python3.13"; exit 1; }
	@test -x $(BLENDER_VENV_313)/bin/python || $(PY313) -m venv $(BLENDER_VENV_313)
	$(BLENDER_VENV_313)/bin/python -m pip install -q --require-hashes --only-binary=:all: -r $(BLENDER_LOCK_313)
	@touch $(BLENDER_STAMP_313)

blender-venvs: $(BLENDER_STAMP) $(BLENDER_STAMP_313)

# the installable extension zip for this platform (cp311 + cp313 wheels)
addon: $(STAMP) $(BLENDER_STAMP)
	$(VENV)/bin/python build_addon.py --out dist

# one zip per platform (linux-x64, windows-x64, macos-arm64, macos-x64), as the extension docs recommend
addon-all: $(STAMP) $(BLENDER_STAMP)
	$(VENV)/bin/python build_addon.py --platforms all --out dist

demo: $(STAMP) addon
	$(VENV)/bin/python -m faceedit_core.cli demo --out out/demo
	$(VENV)/bin/python demo/run_blender_demo.py --zip dist --out out/demo

# lint + format check, then the whole suite, Blender tests included (tests/blender_addon/ drives bpy 5.0.1 in
# .venv-blender and bpy 5.2.3 in .venv-blender-313)
test: $(STAMP) blender-venvs addon lint
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/python -m ruff check .
	$(VENV)/bin/python -m ruff format --check .

test-blender: $(STAMP) blender-venvs
	$(VENV)/bin/python -m pytest -q tests/blender_addon

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

# the preview tier's evaluation, then the default (ICT) head's section of the same file and its atlases
eval: $(STAMP)
	$(VENV)/bin/python benchmarks/eval_preview.py --out docs/evaluation.md
	$(VENV)/bin/python benchmarks/eval_ict.py --out docs/evaluation.md --images docs/images

clean:
	rm -rf out build dist *.egg-info
