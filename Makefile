# Fresh machine: `make demo` sets up .venv with the runtime alone and fills the bundled examples
# as `fastfill run` does without options (the default fill: the shipped model adds nothing);
# `make test` sets up .venv and runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The editable install maps each module to its file: adding, moving or removing a module needs a
# reinstall, so the stamps' names carry a digest of the module list.
MODULES := $(shell find fastfill train -name '*.py' | sort | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(MODULES)
# The demo needs the runtime alone (numpy, ONNX Runtime, Pillow, click, tqdm + native kernels).
RUNTIME_STAMP := $(VENV)/.installed-runtime-$(MODULES)
SOURCES := pyproject.toml CMakeLists.txt $(wildcard csrc/*)

.PHONY: setup setup-runtime demo test bench serve clean

setup: $(STAMP)

setup-runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build. Where pip
	# is not already set to find CPU wheels: make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[train,video,openvino,ray,serve,quantize,dev,anchors,text]'
	# The text detector's model (pyproject.toml's `text` extra says why --no-deps).
	$(BIN)/pip install -q --no-deps --ignore-requires-python 'rapidocr-onnxruntime==1.4.4'
	touch $(STAMP) $(RUNTIME_STAMP)

demo: setup-runtime
	$(BIN)/fastfill run examples/images examples/masks -o out/demo --overwrite
	$(BIN)/python scripts/contact_sheet.py examples/images examples/masks out/demo -o out/demo/sheet.png

test: setup
	scripts/install_chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

serve: setup
	$(BIN)/fastfill serve

bench: setup
	$(BIN)/python benchmarks/bench_ops.py

clean:
	rm -rf build out .pytest_cache
