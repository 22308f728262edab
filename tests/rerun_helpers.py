"""Small corpora and commands for the rerun tests: texts, JSON-lines files, a normalize run, the CLI."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import orjson

from slimpajama.io.discover import discover, discover_all
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def text(seed: int, n: int = 80) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_jsonl(path, texts, opener=open) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with opener(path, "wb") as f:
        for t in texts:
            f.write(orjson.dumps({"text": t}) + b"\n")


def normalize(inputs, out, on_error="skip", verify=False):
    found = discover_all(inputs if isinstance(inputs, list) else [str(inputs)], out=str(out), verify=verify)
    return run_stage(NormalizeStage(ReadOptions(on_error=on_error)), file_tasks(found.files), str(out),
                     progress=False, skipped_files=found.skipped)


def cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slimpajama.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def files_under(d) -> set[str]:
    """Data files (what a glob of the directory finds), the stage's summaries and bookkeeping aside."""
    out = set()
    for dirpath, dirnames, names in os.walk(d):
        dirnames[:] = [x for x in dirnames if not x.startswith("_")]
        out.update(os.path.relpath(os.path.join(dirpath, n), d) for n in names if not n.startswith(("_", "."))
                   and n not in ("ledger.json", "manifest.json"))
    return out


def read_texts(directory) -> list[str]:
    from slimpajama.errors import raise_on_bad
    from slimpajama.io.documents import read_documents

    return [t for f in discover(str(directory)) for b in read_documents(f, raise_on_bad)
            for t in b.column("text").to_pylist()]


def sigkill_once_started(cmd: list[str], state) -> None:
    """Start `cmd` in its own session, SIGKILL it (and its embedded Ray) as soon as a marker appears under the
    `state` folder: a run killed mid-stage, some tasks complete."""
    import contextlib
    import signal
    import time

    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and any(state.rglob("*.json"))):
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):  # its embedded Ray, if this small run started one
        os.killpg(proc.pid, signal.SIGKILL)
