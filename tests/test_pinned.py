"""The bytes users keep, pinned on the sample corpus run through the whole pipeline (tests/pipeline_helpers.py):
the released documents, the token cache and the packed shards. A speed-up may change intermediate files' format,
never these; a deliberate change of them updates the digests here and says so.

Changed once, deliberately: the fast hash's scheme 2 (one-permutation hashing, issue 45) is another hash family, so
the sample's dedup keeps other documents near the threshold (release, then tokens and shards of that release). The
tokenize engine (issue 43) changed none of them: these digests held under it with scheme 1, and
tests/test_engine.py tokenizes this release with both engines into the same bytes."""

import hashlib

PINNED = {  # kind: (files, SHA-256 over every file's path and SHA-256, in path order)
    "release": (("slimpajama/**/*.jsonl.zst",), 9, "42b5bc647acbb2da67fca064001258708ee7833b336ce74c7ba32f16bf38d7fe"),
    "tokens": (("tokens/**/*.tokens.bin", "tokens/**/*.docs.parquet"), 18,
               "f3e329b477ebacdbf99ade85defdcc5f2bf813f374592a8a39ba69b0d74daa87"),
    "shards": (("shards/**/*.arrow",), 6, "f0c38971ee122cd85c3559d3dd71a10b5c6a417ada620081136eda3e9a8e94ea"),
}


def test_released_documents_token_cache_and_shards_are_the_pinned_bytes(clean_pipeline):
    data, _, _ = clean_pipeline
    for kind, (patterns, n, digest) in PINNED.items():
        files = sorted({p for pattern in patterns for p in data.glob(pattern)})
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(data)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
        assert (len(files), h.hexdigest()) == (n, digest), kind


def test_the_bestfit_plan_is_the_pinned_plan():
    """200,000 web-like document lengths at seq 2048 and 8192 (the digest of the plan the sorted-array kernel
    made, before the O(log) one): pieces, rows and documents cut."""
    import numpy as np

    from slimpajama.packers.pack import bestfit_plan

    rng = np.random.default_rng(2024)
    lens = rng.lognormal(np.log(700), 1.4, size=200_000).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)
    h = hashlib.sha256()
    for seq in (2048, 8192):
        plan, cut = bestfit_plan(starts, lens, seq, 0)
        for a in (plan.piece_start, plan.piece_len, plan.row_ptr):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        h.update(str(cut).encode())
    assert h.hexdigest() == "f4a4786ba97909a909b93db77d6f5f32c761f41221f47e60b56d0fb4b33c2052"


def test_the_compiled_kernels_load_from_numbas_cache_in_a_new_process(tmp_path):
    """A kernel numba cannot cache (a closure over other kernels) recompiles in every worker, seconds each, and
    grows the cache by one entry per process: the second process here must compile nothing."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\nfrom slimpajama.packers.pack import bestfit_plan\n"
            "bestfit_plan(np.arange(5, dtype=np.int64) * 3, np.full(5, 3, np.int64), 4, 0)\n")
    env = {**os.environ, "NUMBA_DEBUG_CACHE": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert "data saved" in runs[0].stdout + runs[0].stderr
    assert "data saved" not in runs[1].stdout + runs[1].stderr
