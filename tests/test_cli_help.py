"""The command line's interface: every command's `--help` as tests/data/cli_help.json recorded it. A change
here is a change users see: regenerate the file (`python tests/test_cli_help.py`) only for an intended one."""

import json
import pathlib
import sys

import click
from click.testing import CliRunner

from slimpajama.cli import main

GOLDEN = pathlib.Path(__file__).parent / "data" / "cli_help.json"


def every_help() -> dict[str, str]:
    def walk(cmd, path):
        yield path
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                yield from walk(cmd.commands[name], [*path, name])

    out = {}
    for path in walk(main, []):
        r = CliRunner().invoke(main, [*path, "--help"], terminal_width=110)
        assert r.exit_code == 0, r.output
        out[" ".join(path) or "slimpajama"] = r.output
    return out


def test_every_command_help_is_unchanged():
    golden = json.loads(GOLDEN.read_text())
    now = every_help()
    assert sorted(now) == sorted(golden), "commands were added or removed"
    for name in golden:
        assert now[name] == golden[name], f"`{name} --help` changed"


def test_pipeline_takes_the_options_that_shape_each_stages_output():
    """`pipeline` had drifted from the commands (no --min-chars, MinHash settings, --seed, --engine): the shared
    ones are one definition (cli/options.py) now."""
    import re

    def flags(name):
        return set(re.findall(r"^  (?:-\w, )?(--[a-z-]+)", every_help()[name], re.M))

    pipeline = flags("pipeline")
    assert {"--ngram", "--num-perm", "--bands", "--rows", "--threshold", "--hash"} <= flags("dedup") & pipeline
    assert {"--min-chars", "--seed", "--holdout", "--engine", "--encoding", "--packing", "--seq"} <= pipeline
    # every option of every stage command it runs, but where it writes (and decontaminate's, named --eval-*
    # there: its --ngram counts words, dedup's characters)
    where = {"--out", "-o", "--minhash-dir", "--out-root", "--verify-outputs"}  # where it writes, and shards'
    # check of its finished files on a rerun
    renamed = {"--ngram": "--eval-ngram", "--min-words": "--eval-min-words", "--mode": "--eval-mode"}
    for name in ("normalize", "dedup", "decontaminate", "release", "tokenize", "shards"):
        own = {renamed.get(f, f) if name == "decontaminate" else f for f in flags(name)} - where
        assert own <= pipeline, (name, sorted(own - pipeline))


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(every_help(), indent=1, sort_keys=True))
    sys.exit(0)


def test_a_whole_pipeline_run_in_one_config_file(tmp_path):
    """`pipeline --print-config` writes the run's settings as TOML; `--config` reads them back (the same run), a
    flag on the command line wins, and a key it has no option for or a file that is not TOML is one usage line."""
    args = ["pipeline", "raw", "--seq", "2048", "--seq", "8192", "--range", "0:0.75", "--range", "0.75:1",
            "--min-chars", "300", "--hash", "slimpajama", "--bucket-bytes", "64MB", "--print-config"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert 'inputs = ["raw"]' in first.output and "range = [[0.0, 0.75], [0.75, 1.0]]" in first.output
    config = tmp_path / "run.toml"
    config.write_text(first.output)
    again = CliRunner().invoke(main, ["pipeline", "--config", str(config), "--print-config"])
    assert again.exit_code == 0 and again.output == first.output
    override = CliRunner().invoke(main, ["pipeline", "--config", str(config), "--seed", "7", "--print-config"])
    assert "seed = 7\n" in override.output and "min-chars = 300\n" in override.output
    (tmp_path / "bad.toml").write_text("bogus = 1\n")
    (tmp_path / "worse.toml").write_text("seq = [\n")
    for name, says in (("bad.toml", "sets bogus, which `pipeline` has no option for"), ("worse.toml", "is not TOML")):
        r = CliRunner().invoke(main, ["pipeline", "--config", str(tmp_path / name)])
        assert r.exit_code == 2 and says in r.output
