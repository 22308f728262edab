"""Every default a user can override, defined once: SlimPajama's recipe (the numbers of its public code) and the
sizes that bound one task's memory. The stages' configs and the command line's options both read them here.
This module imports nothing, so the command line shows the defaults without loading the stages' packages."""

# SlimPajama's recipe
MIN_CHARS = 200  # low-length filter: fewer characters in the cleaned view and the document is dropped
# decontaminate: GPT-3's rule (a shared 13-word run; shorter items of at least 8 words matched whole) and
# NeMo-Curator's cut window
DECONTAMINATE_NGRAM, DECONTAMINATE_MIN_WORDS, DECONTAMINATE_WINDOW = 13, 8, 200
NGRAM = 13  # MinHash: character n-grams of the cleaned view
NUM_PERM = 128
BANDS, ROWS = 9, 13  # LSH: bands x rows per band (datasketch's choice for the threshold)
THRESHOLD = 0.8  # Jaccard
RELEASE_SEED = 42  # split, weights and shuffle
HOLDOUT = 0.0017  # fraction of documents held out, half validation, half test
CHUNKS = 10  # train/chunk1..chunk10
DOCS_PER_FILE = 10_000

# BTLM's tokens
ENCODING = "gpt2"  # = tiktoken r50k_base, vocab 50257, EOS 50256
SEQ = 2048
PACK_RANGE = (0.0, 1.0)  # the whole train split; BTLM: 0:0.75 at 2,048, then 0.75:1 at 8,192

# sizes (bytes) that bound a task's memory or set the number of tasks; none changes the output
BATCH_ROWS = 1024  # documents per read batch
BATCH_BYTES = 8 << 20  # text per read batch; a worker peaks near 150 MB over its baseline with it
# RedPajama's largest documents (whole books) are a few MB; a larger "document" is almost always a broken dump,
# and it is the one thing that would make a worker's memory depend on the input.
MAX_DOC_BYTES = 32 << 20
TASK_BYTES = 512 << 20  # a bigger plain .jsonl or parquet file is read by several tasks
MIN_PARTS, MIN_PART_BYTES = 16, 32 << 20  # a smaller input is cut finer, into parts of at least 32 MiB (spans.py)
PARTITION_BYTES = 256 << 20  # working set of one LSH task
BUCKET_BYTES = 256 << 20  # text per release shuffle bucket
SHARD_FILE_BYTES = 256 << 20  # a packed shard file
# a run whose pending tasks read at most this much executes in the driver, without starting Ray (which costs more
# than such a run's work: docs/benchmarks.md, start-up); $SLIMPAJAMA_INLINE_BYTES overrides it (0: always Ray)
INLINE_BYTES = 32 << 20
SAMPLE_MIN_DOCS = 200  # `slimpajama sample`: fewer slots than its planted documents need
