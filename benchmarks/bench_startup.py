"""The fixed cost of a stage command: each stage of `make dedup` / `make shards` on a 200-document corpus, as the
user runs it (a new process), against the time to import that stage's libraries in a new process; the command
with its tasks in the driver (the default for a run this small) and with Ray (SLIMPAJAMA_INLINE_BYTES=0).
Best of 3 each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from slimpajama.tools.sample_corpus import generate_corpus

# each stage: its command (in a work dir), the folder it writes, and the module it imports to run
STAGES = [
    ("normalize", ["normalize", "raw", "--out", "n"], "n", "slimpajama.pipelines.normalize"),
    ("dedup", ["dedup", "n", "--out", "d"], "d", "slimpajama.pipelines.dedup"),
    ("release", ["release", "d", "--out", "r"], "r", "slimpajama.pipelines.release"),
    ("tokenize", ["tokenize", "r", "--out", "t"], "t", "slimpajama.pipelines.tokens"),
    ("shards", ["shards", "t", "--seq", "64", "--out-root", "s"], "s", "slimpajama.pipelines.pack"),
]
CLI = [sys.executable, "-m", "slimpajama.cli"]


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    work = tempfile.mkdtemp(prefix="bench-startup-")
    try:
        generate_corpus(os.path.join(work, "raw"), seed=1, docs=200)  # the smallest sample corpus (~1 MB)
        out = {}
        for name, args, written, module in STAGES:
            imports = best(lambda m=module: subprocess.run([sys.executable, "-c", f"import slimpajama.cli.app, {m}"],
                                                           check=True))
            row = {"import_s": round(imports, 2)}
            for mode, inline in (("driver", ""), ("ray", "0")):
                env = {**os.environ, "SLIMPAJAMA_INLINE_BYTES": inline}

                def once(a=args, w=written, e=env):  # from scratch each time: the work is done, not resumed
                    shutil.rmtree(os.path.join(work, w), ignore_errors=True)
                    subprocess.run(CLI + a + ["--quiet"], cwd=work, env=e, check=True, capture_output=True)

                row[f"command_{mode}_s"] = round(best(once), 2)
                row[f"{mode}_vs_import"] = round(row[f"command_{mode}_s"] / imports, 2)
            out[name] = row
        print(json.dumps(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
