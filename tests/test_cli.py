import subprocess
import sys

import pytest
from click.testing import CliRunner

from slimpajama.cli import main

COMMANDS = ["sample", "ingest", "normalize", "dedup", "release", "tokenize", "shards", "verify", "stats"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_on_every_command(cmd):
    r = CliRunner().invoke(main, [cmd, "--help"])
    assert r.exit_code == 0 and "Usage:" in r.output and "--help" in r.output


def test_missing_input_is_one_clear_line_and_nonzero_exit(tmp_path):
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "ingest", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: input not found: {tmp_path / 'nope'}"


def test_on_error_fail_cli_message(tmp_path):
    (tmp_path / "raw" / "S").mkdir(parents=True)
    (tmp_path / "raw" / "S" / "a.jsonl").write_bytes(b'{"text": "ok"}\n{"text": 5}\n')
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "ingest", str(tmp_path / "raw"), "--out",
                        str(tmp_path / "o"), "--on-error", "fail", "--quiet", "--workers", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "error: bad input at S/a.jsonl:2: non_string_text" in r.stderr


def test_sample_command_writes_corpus(tmp_path):
    r = CliRunner().invoke(main, ["sample", "--out", str(tmp_path / "raw"), "--docs", "200"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "raw" / "_ground_truth.json").exists()
    assert "200 documents" in r.output


def test_pipeline_read_options_reach_every_stage_that_reads(monkeypatch):
    """`pipeline --on-error/--batch-rows/--max-doc-bytes` hold in tokenize too, not only in normalize."""
    from slimpajama.io.reading import ReadOptions
    from slimpajama.pipelines import pipeline as pl

    seen = {}

    def stage(name):
        def run(*args, **kwargs):
            seen[name] = kwargs.get("read") if name == "tokenize" else args[0].read
            return None
        return run

    monkeypatch.setattr(pl, "run_documents", stage("normalize"))
    monkeypatch.setattr(pl, "run_tokenize", stage("tokenize"))
    for name in ("run_dedup", "run_release", "run_shards"):
        monkeypatch.setattr(pl, name, lambda *a, **k: None)
    read = ReadOptions(on_error="fail", batch_rows=7, max_doc_bytes=1000)
    pl.run_pipeline("raw", "data", pl.PipelineConfig(read=read))
    assert seen == {"normalize": read, "tokenize": read}


def test_pipeline_on_error_fail_names_the_bad_record(tmp_path):
    (tmp_path / "raw" / "S").mkdir(parents=True)
    good = b'{"text": "' + b"word " * 100 + b'"}\n'
    (tmp_path / "raw" / "S" / "a.jsonl").write_bytes(good + b'{"text": 5}\n')
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "pipeline", str(tmp_path / "raw"), "--data",
                        str(tmp_path / "data"), "--on-error", "fail", "--quiet", "--workers", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "error: bad input at S/a.jsonl:2: non_string_text: 'text' is int, not a string"


def test_a_notice_from_the_library_reaches_the_user(tmp_path):
    """Library code logs (a compressed file that cannot be split); the command line prints it as a notice."""
    import orjson
    import zstandard

    path = tmp_path / "raw" / "c4" / "c4.jsonl.zst"
    path.parent.mkdir(parents=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(
        orjson.dumps({"text": f"document {i} " * 40}) + b"\n" for i in range(300))))
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "normalize", str(tmp_path / "raw"), "--out",
                        str(tmp_path / "n"), "--task-bytes", "1KB", "--quiet", "--workers", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "notice: c4/c4.jsonl.zst (0 MiB) is one compressed stream: one task reads it all" in r.stderr
