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
