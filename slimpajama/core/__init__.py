"""The pure core: document schema, text normalization and the length filter, MinHash and LSH, the ledger, the
release rules. Functions of arrays and Arrow batches; no files, no Ray, no printing."""
