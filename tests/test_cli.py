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


def test_pipeline_options_reach_their_stages(monkeypatch, tmp_path):
    """`pipeline` takes every option that shapes a stage's output and hands it to that stage (issue 46: it had no
    --min-chars, MinHash settings, --verify/--against, --seed/--weights, --tokenizer/--eos/--bos, --engine)."""
    from click.testing import CliRunner

    from slimpajama.cli import main
    from slimpajama.pipelines import pipeline as pl

    seen = {}
    monkeypatch.setattr(pl, "run_documents", lambda stage, *a, **k: seen.setdefault("min_chars",
                                                                                   stage.transforms[1].min_chars))
    monkeypatch.setattr(pl, "run_decontaminate", lambda src, out, cfg, **k: seen.update(decontaminate=cfg))
    monkeypatch.setattr(pl, "run_dedup", lambda *a, **k: seen.update(dedup=(k["cfg"], k["verify"], k["against"])))
    monkeypatch.setattr(pl, "run_release", lambda src, out, cfg, **k: seen.update(release=cfg))
    monkeypatch.setattr(pl, "run_tokenize", lambda src, out, spec, **k: seen.update(tokenize=(spec, k["eos"],
                                                                                               k["bos"], k["engine"])))
    monkeypatch.setattr(pl, "run_shards", lambda *a, **k: None)
    (tmp_path / "old").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tokenizer.json").write_text("{}")  # found, never loaded: the stages are stand-ins
    r = CliRunner().invoke(main, [
        "pipeline", "raw", "--data", str(tmp_path / "d"), "--min-chars", "300", "--hash", "slimpajama", "--bands", "20",
        "--rows", "6", "--verify", "--against", str(tmp_path / "old"), "--seed", "7", "--weights", "RedPajamaC4=0.5",
        "--tokenizer", str(tmp_path / "model"), "--eos", "</s>", "--bos", "--engine", "reference",
        "--eval", "mmlu.jsonl", "--eval", "arc/", "--eval-ngram", "10", "--eval-min-words", "6", "--eval-mode", "cut",
        "--eval-field", "question"])
    assert "dedup" in seen, r.output
    cfg, verify, against = seen["dedup"]
    assert seen["min_chars"] == 300 and (cfg.hash, cfg.bands, cfg.rows, verify, against) == (
        "slimpajama", 20, 6, True, [str(tmp_path / "old")])
    assert (seen["release"].seed, dict(seen["release"].weights)) == (7, {"RedPajamaC4": 0.5})
    assert seen["tokenize"] == (str(tmp_path / "model"), "</s>", "", "reference")
    d = seen["decontaminate"]
    assert (d.eval, d.ngram, d.min_words, d.mode, d.eval_fields, d.min_chars) == (
        ("mmlu.jsonl", "arc/"), 10, 6, "cut", ("question",), 300)
