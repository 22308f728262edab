"""Clear messages for the machine's side of a run: a missing input, an output that cannot be created, a disk
that fills up during a write (leaving nothing a rerun would trust)."""

import hashlib
import os
import subprocess
import sys

import pytest

from slimpajama.errors import SlimPajamaError
from slimpajama.io import writers
from slimpajama.io.discover import discover
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks
from slimpajama.pipelines.markers import is_complete
from slimpajama.pipelines.runner import execute_task


def cli(*args):
    return subprocess.run([sys.executable, "-m", "slimpajama.cli", *map(str, args)], capture_output=True, text=True)


def test_missing_input_names_it(tmp_path):
    r = cli("pipeline", tmp_path / "nope", "--data", tmp_path / "d", "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: input not found: {tmp_path / 'nope'}"


def test_output_that_cannot_be_created_is_one_line(sample_corpus, tmp_path):
    raw, _ = sample_corpus
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    r = cli("normalize", raw, "--out", blocker / "normalized", "--quiet", "--workers", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith(f"error: cannot create output directory {blocker / 'normalized'}")
    assert "Not a directory" in r.stderr


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_disk_full_during_a_write_fails_clearly_and_leaves_nothing_trusted(sample_corpus, tmp_path, monkeypatch):
    """Every temporary file is a link to /dev/full, where the kernel answers each write with ENOSPC."""
    raw, _ = sample_corpus
    stage = NormalizeStage(ReadOptions())
    task = file_tasks(discover(str(raw)))[0]
    out = str(tmp_path / "out")
    full_links = []

    def tmp_on_a_full_disk(path):
        link = writers.TMP_PREFIX + "full-" + str(len(full_links))
        link = os.path.join(os.path.dirname(path), link)
        os.symlink("/dev/full", link)
        full_links.append(link)
        return link

    monkeypatch.setattr(writers, "tmp_path_for", tmp_on_a_full_disk)
    with pytest.raises(SlimPajamaError, match=r"task .* \(output .*\): .*No space left on device.*rerun"):
        execute_task(stage, task, out)
    assert full_links and not any(os.path.lexists(p) for p in full_links)  # temporary files removed
    assert not os.path.exists(os.path.join(out, task.key + ".parquet"))
    assert not is_complete(stage, task, out)

    monkeypatch.undo()  # space freed: the rerun completes, with the bytes of a run that never failed
    execute_task(stage, task, out)
    assert is_complete(stage, task, out)
    execute_task(stage, task, str(tmp_path / "clean"))
    assert _digest(os.path.join(out, task.key + ".parquet")) == \
        _digest(tmp_path / "clean" / (task.key + ".parquet"))
