"""The bytes users keep, pinned on the sample corpus run through the whole pipeline (tests/pipeline_helpers.py):
the released documents, the token cache and the packed shards. A speed-up may change intermediate files' format,
never these; a deliberate change of them updates the digests here and says so."""

import hashlib

PINNED = {  # kind: (files, SHA-256 over every file's path and SHA-256, in path order)
    "release": (("slimpajama/**/*.jsonl.zst",), 9, "0dc721b84ebee120a35affc9d67a64d5fa2db90d38e3a46db0bd79a9aea2f294"),
    "tokens": (("tokens/**/*.tokens.bin", "tokens/**/*.docs.parquet"), 18,
               "ddc6843ab17241b193c1021f9f89e9d953b9fd8795d57d4937294f0ebfe1f75b"),
    "shards": (("shards/**/*.arrow",), 6, "f9cbe592327ca550127e59bacef6a157f163dfb14d4ab82cfa95a9ab7b9389cd"),
}


def test_released_documents_token_cache_and_shards_are_the_pinned_bytes(clean_pipeline):
    data, _, _ = clean_pipeline
    for kind, (patterns, n, digest) in PINNED.items():
        files = sorted({p for pattern in patterns for p in data.glob(pattern)})
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(data)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
        assert (len(files), h.hexdigest()) == (n, digest), kind
