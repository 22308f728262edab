# The user's entry point. Every target depends on a stamped .venv that it creates and fills on first use,
# so a fresh clone needs nothing but `make <target>`.
PYTHON ?= python3
VENV   ?= .venv
# CPU build of torch pinned for this machine (an unpinned torch pulls a multi-GB CUDA build).
# Override for your hardware, e.g. `make install TORCH=torch==2.5.1`.
TORCH  ?= torch==2.13.0
DATA   ?= data
SAMPLE ?= $(DATA)/raw
RAW    ?= $(SAMPLE)
WORKERS ?=
RAY_ADDRESS ?=
# Big plain .jsonl / parquet inputs are split into parts of about this size, read by separate tasks (0: one per file;
# empty: the default). Empty RANGE, PACKING, HOLDOUT: the commands' own defaults (slimpajama/core/defaults.py).
TASK_BYTES ?=
PYTEST_ARGS ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
# The other libraries' readers the tests check the exports and shards with (HF datasets, litdata, MosaicML
# streaming), in their own virtualenv: they pin what the project must not (streaming: numpy<2.2, transformers<5).
PEERS ?= .venv-peers
PEERS_STAMP := $(PEERS)/.installed
PEER_PACKAGES := datasets==5.0.1 litdata==0.2.76 mosaicml-streaming==0.13.0 zstandard
SP    := $(BIN)/slimpajama
# RAY_ADDRESS=<head>:6379 runs every stage on that Ray cluster (see README, "Running on a cluster").
WORKER_FLAG := $(if $(WORKERS),--workers $(WORKERS),) $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS),)

NORMALIZED := $(DATA)/work/normalized
DEDUP      := $(DATA)/work/dedup
DECONTAMINATED := $(DATA)/work/decontaminated
EVAL       ?=
RELEASE    := $(DATA)/slimpajama
TOKENS     := $(DATA)/tokens
ENCODING   ?= gpt2
SEQ        ?= 2048
RANGE      ?=
PACKING    ?=
HOLDOUT    ?=
# make train: the sample corpus through the whole pipeline in its own data folder, then the bundled trainer.
# DEVICE=cpu (default): the tiny preset at 256/1024 tokens (BTLM's 2k/8k ratio, CPU-sized), a 3% holdout so
# validation has enough tokens. DEVICE=cuda: PRESET (small by default) at BTLM's 2048/8192 tokens, 64k tokens per
# step, a 10% holdout (the per-position check needs 16k validation tokens). TRAIN_FLAGS passes more options.
DEVICE      ?= cpu
ifeq ($(DEVICE),cuda)
PRESET      ?= small
TRAIN_SEQ1  ?= 2048
TRAIN_SEQ2  ?= 8192
TRAIN_TOKENS ?= 65536
TRAIN_HOLDOUT ?= 0.1
else
PRESET      ?= tiny
TRAIN_SEQ1  ?= 256
TRAIN_SEQ2  ?= 1024
TRAIN_TOKENS ?= 2048
TRAIN_HOLDOUT ?= 0.03
endif
TRAIN_DATA  ?= $(DATA)/train-demo-$(DEVICE)
TRAIN_STEPS ?= 300
TRAIN_FLAGS ?=
# The sample corpus is generated when RAW is the sample (the default) and missing.
RAW_DEP    := $(if $(filter $(RAW),$(SAMPLE)),$(SAMPLE)/_ground_truth.json,)

.PHONY: install peers test test-all lint sample dedup tokens shards export stats train bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[dev,train]"
	$(SP) encodings fetch --encoding gpt2
	touch $@

$(PEERS_STAMP): Makefile
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet "$(TORCH)" $(PEER_PACKAGES)
	touch $@

peers: $(PEERS_STAMP)

test: $(STAMP) $(PEERS_STAMP)
	SLIMPAJAMA_PEERS=$(abspath $(PEERS)) $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) $(PEERS_STAMP)
	SLIMPAJAMA_PEERS=$(abspath $(PEERS)) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# The bundled sample corpus, generated once into SAMPLE (RAW=<dir> points the pipeline at your own corpus).
sample: $(SAMPLE)/_ground_truth.json

$(SAMPLE)/_ground_truth.json: | $(STAMP)
	$(SP) sample --out $(SAMPLE)

# raw corpus -> normalize -> global dedup -> release (SlimPajama's layout). Every stage resumes: a second run
# recomputes nothing. EVAL="mmlu.jsonl hellaswag/" (evaluation sets: files or folders) decontaminates before release.
dedup: $(STAMP) $(RAW_DEP)
	$(SP) normalize $(RAW) --out $(NORMALIZED) $(if $(TASK_BYTES),--task-bytes $(TASK_BYTES),) $(WORKER_FLAG)
	$(SP) dedup $(NORMALIZED) --out $(DEDUP) $(WORKER_FLAG)
	$(if $(EVAL),$(SP) decontaminate $(DEDUP) --out $(DECONTAMINATED) $(foreach e,$(EVAL),--eval $(e)) $(WORKER_FLAG),)
	$(SP) release $(if $(EVAL),$(DECONTAMINATED),$(DEDUP)) --out $(RELEASE) $(if $(HOLDOUT),--holdout $(HOLDOUT),) \
		$(WORKER_FLAG)

# Tokenize the release once per encoding, then pack: `make shards SEQ=2048 RANGE=0:0.75` and
# `make shards SEQ=8192 RANGE=0.75:1` give BTLM's 75/25 schedule on disjoint tokens. Earlier stages run first.
tokens: dedup
	$(SP) tokenize $(RELEASE) --out $(TOKENS) --encoding $(ENCODING) $(if $(TASK_BYTES),--task-bytes $(TASK_BYTES),) $(WORKER_FLAG)

shards: tokens
	$(SP) shards $(TOKENS)/$(ENCODING) --seq $(SEQ) $(if $(RANGE),--range $(RANGE),) $(if $(PACKING),--packing $(PACKING),) --out-root $(DATA)/shards $(WORKER_FLAG)

# The token cache for other trainers: FORMAT=megatron (data/export/megatron/train.bin/.idx: Megatron-LM, NeMo,
# GPT-NeoX, nanoGPT), litdata (litgpt) or mds (llm-foundry); per source with BY_SOURCE=1. The earlier stages run first.
FORMAT     ?= megatron
EXPORT_SPLIT ?= train
BY_SOURCE  ?=
export: tokens
	$(SP) export $(TOKENS)/$(ENCODING) --format $(FORMAT) --split $(EXPORT_SPLIT) \
		--out $(DATA)/export/$(FORMAT)/$(EXPORT_SPLIT) $(if $(BY_SOURCE),--by-source,)

# Tables of every stage found under DATA, plus data/stats/stats.json and PNG plots.
stats: $(STAMP)
	$(SP) stats $(DATA) --plot $(DATA)/stats --write-json $(DATA)/stats/stats.json

train: $(STAMP) $(SAMPLE)/_ground_truth.json
	$(MAKE) --no-print-directory shards DATA=$(TRAIN_DATA) RAW=$(RAW) SAMPLE=$(SAMPLE) HOLDOUT=$(TRAIN_HOLDOUT) SEQ=$(TRAIN_SEQ1) RANGE=0:0.75
	$(MAKE) --no-print-directory shards DATA=$(TRAIN_DATA) RAW=$(RAW) SAMPLE=$(SAMPLE) HOLDOUT=$(TRAIN_HOLDOUT) SEQ=$(TRAIN_SEQ2) RANGE=0.75:1
	$(SP) train --stage1 $(TRAIN_DATA)/shards/seq$(TRAIN_SEQ1)-0-0.75/train \
		--stage2 $(TRAIN_DATA)/shards/seq$(TRAIN_SEQ2)-0.75-1/train --out runs/train-$(DEVICE)-$(PRESET) \
		--steps $(TRAIN_STEPS) --device $(DEVICE) --preset $(PRESET) --tokens-per-step $(TRAIN_TOKENS) $(TRAIN_FLAGS)

# The dedup peers, each in a virtualenv of its own (never a project dependency): datatrove and rensa.
BENCH_PEERS ?= .venv-bench
# xxhash<4: datatrove 0.10.1 hashes str, which xxhash 4 refuses ("Strings must be encoded before hashing")
$(BENCH_PEERS)/%/.installed:
	test -x $(BENCH_PEERS)/$*/bin/python || $(PYTHON) -m venv $(BENCH_PEERS)/$*
	$(BENCH_PEERS)/$*/bin/python -m pip install --quiet $(if $(filter datatrove,$*),datatrove==0.10.1 orjson zstandard regex "xxhash<4" tokenizers spacy,rensa==0.5.0)
	touch $@

bench: $(STAMP) $(BENCH_PEERS)/datatrove/.installed $(BENCH_PEERS)/rensa/.installed
	PEER_PYTHON=$(abspath $(BENCH_PEERS))/datatrove/bin/python PEER_RENSA=$(abspath $(BENCH_PEERS))/rensa/bin/python \
		$(BIN)/python benchmarks/run.py --out benchmarks/results.json

# Removes what make and the pipeline generated; a corpus of yours under RAW is kept unless it is the sample.
clean:
	rm -rf $(DATA)/work $(DATA)/slimpajama $(DATA)/tokens $(DATA)/shards $(DATA)/stats $(DATA)/export
	if [ -f $(SAMPLE)/_ground_truth.json ]; then rm -rf $(SAMPLE); fi
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache benchmarks/results.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
