# grpc-terminal: every target creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Code generation uses its own environment, pinned low on purpose: protoc 25
# (grpcio-tools 1.62) writes code that runs on protobuf 4.25 through 7.x.
GEN_VENV := .venv-proto
GEN_STAMP := $(GEN_VENV)/.installed
PROTO := proto/c1/connector/v2/annotation_provision_failure.proto
GEN_OUT := grpc_terminal/_gen

export GT_PROTOC_PYTHON := $(abspath $(GEN_VENV))/bin/python

.PHONY: test test-wheel lint proto demo interop bench fuzz soak test-floor test-extras-floor mutate docs docs-serve clean

# editable_mode=compat: a plain path entry, so mypy and pyright run from any
# folder find grpc_terminal in this venv (the default import-hook mode hides it).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,tenacity,api-core,temporal,otel,prometheus,validation,protovalidate,celery]' --config-settings editable_mode=compat
	touch $@

$(GEN_STAMP):
	$(PYTHON) -m venv $(GEN_VENV)
	$(GEN_VENV)/bin/pip install -q 'grpcio-tools==1.62.3' 'mypy-protobuf==3.6.0' 'buf-bin==1.75.0'
	touch $@

test: lint
	GT_NO_SKIP=1 $(BIN)/pytest --ignore=tests/interop -m "not slow"

# The suite against the built wheel installed in a clean environment: the
# tests, examples and benchmarks are copied out of the tree so that
# grpc_terminal can only be imported from site-packages.
WHEEL_VENV := .venv-wheel
WHEEL_RUN := build/wheel-tests
test-wheel: $(GEN_STAMP)
	rm -rf dist $(WHEEL_VENV) $(WHEEL_RUN)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/pip wheel -q --no-deps -w dist .
	$(WHEEL_VENV)/bin/pip install -q "$$(ls dist/grpc_terminal-*.whl)[dev,tenacity,api-core,temporal,otel,prometheus,validation,protovalidate,celery]"
	mkdir -p $(WHEEL_RUN)
	cp -r tests examples benchmarks fuzz proto docs mkdocs.yml Makefile README.md LICENSE pyproject.toml $(WHEEL_RUN)/
	cd $(WHEEL_RUN) && GT_NO_SKIP=1 GT_EXPECT_INSTALLED=1 ../../$(WHEEL_VENV)/bin/python -m pytest \
	  -p no:cacheprovider --ignore=tests/interop -m "not slow" tests

lint: $(STAMP) $(GEN_STAMP)
	$(BIN)/ruff check grpc_terminal tests examples benchmarks
	$(BIN)/mypy
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright
	$(BIN)/lint-imports
	cd proto && ../$(GEN_VENV)/bin/buf lint

# The .proto travels in the wheel beside its generated code (like the google/rpc
# protos in googleapis-common-protos): -I <site-packages>/grpc_terminal/_gen.
proto: $(GEN_STAMP)
	PATH="$(abspath $(GEN_VENV))/bin:$$PATH" $(GEN_VENV)/bin/python -m grpc_tools.protoc \
	  -Iproto --python_out=$(GEN_OUT) --mypy_out=$(GEN_OUT) $(PROTO)
	cp $(PROTO) $(GEN_OUT)/$(PROTO:proto/%=%)

demo: $(STAMP)
	$(BIN)/python -m examples.provisioner.demo

interop: $(STAMP)
	bash tests/interop/run.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks

fuzz: $(STAMP)
	$(BIN)/pip install -q 'atheris>=2.3'
	PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python $(BIN)/python fuzz/fuzz_decode.py \
	  -max_total_time=$${FUZZ_SECONDS:-60} fuzz/corpus

# Mutation testing of the decision modules ([tool.mutmut] in pyproject.toml):
# slow (about half an hour on two cores), so not part of `make test`.
# `make mutate` prints the score per module; `mutmut results` lists survivors.
mutate: $(STAMP)
	$(BIN)/pip install -q 'mutmut==3.8.1'
	$(BIN)/mutmut run --max-children $${MUTATE_JOBS:-2} || true
	$(BIN)/python benchmarks/mutation_scores.py

# The documentation site: --strict fails on a broken link or reference.
# NO_MKDOCS_2_WARNING only silences Material's banner about MkDocs 2.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

soak: $(STAMP)
	$(BIN)/pytest -m slow -s -p no:cacheprovider -p no:logging tests/integration/test_soak.py

# The declared dependency floors, in an environment of their own.
test-floor: $(GEN_STAMP)
	$(PYTHON) -m venv .venv-floor
	.venv-floor/bin/pip install -q 'grpcio==1.60.0' 'grpcio-status==1.60.0' 'protobuf==4.21.6' \
	  'googleapis-common-protos==1.56.4' 'pytest>=8' 'pytest-timeout' 'pytest-asyncio' 'hypothesis'
	.venv-floor/bin/pip install -q --no-deps -e .
	.venv-floor/bin/pytest -p no:cacheprovider -m 'not slow' --ignore=tests/interop \
	  --ignore=tests/extras tests

# The integrations' extras at their declared floors (pyproject.toml), over the
# newest core dependencies: each extra's tests against its oldest release.
EXTRAS_FLOOR := 'opentelemetry-api==1.24.0' 'opentelemetry-sdk==1.24.0' \
  'opentelemetry-instrumentation-grpc==0.45b0' 'prometheus-client==0.20.0' 'pydantic==2.4.0' \
  'protovalidate==2.1.0' 'celery==5.3.0' 'kombu==5.3.0'
test-extras-floor:
	rm -rf .venv-extras-floor
	$(PYTHON) -m venv .venv-extras-floor
	.venv-extras-floor/bin/pip install -q --upgrade pip
	.venv-extras-floor/bin/pip install -q -e . $(EXTRAS_FLOOR) 'pytest>=8' 'pytest-timeout' 'pytest-asyncio' 'hypothesis'
	.venv-extras-floor/bin/pytest -p no:cacheprovider -m 'not slow' tests/extras/test_otel.py \
	  tests/extras/test_prometheus.py tests/extras/test_validation.py tests/extras/test_celery.py

clean:
	rm -rf $(VENV) $(GEN_VENV) .venv-floor .venv-extras-floor $(WHEEL_VENV) build dist site .mypy_cache .pytest_cache .ruff_cache
