"""What a user who tries to break it meets: damaged shards named with the command that checks and rebuilds them,
another library's folders recognized, small settings said out loud, every line within 80 columns."""

from __future__ import annotations

import io
import logging
import shutil

import pytest
from click.testing import CliRunner
from rich.console import Console

from slimpajama.cli import main
from slimpajama.errors import SlimPajamaError
from slimpajama.packers import PackedDataset, ShardReader
from slimpajama.pipelines.export import run_export
from slimpajama.pipelines.pack import run_shards


@pytest.fixture(scope="module")
def shards(cache, tmp_path_factory):
    """A packed set of the sample's tokens (train in several files), copied per test by `split_copy`."""
    out = tmp_path_factory.mktemp("shards") / "seq32"
    run_shards(str(cache / "tokens" / "gpt2"), "", 32, out_dir=str(out), file_bytes=1, progress=False)
    return out


@pytest.fixture
def split_copy(shards, tmp_path):
    """A copy of the packed set (its _state too, so the rebuild command is known); its train split."""
    shutil.copytree(shards, tmp_path / "seq32")
    return tmp_path / "seq32" / "train"


def damage_message(split, **kw) -> str:
    with pytest.raises(SlimPajamaError) as e:
        PackedDataset(str(split), **kw)
    return str(e.value)


def test_a_truncated_shard_is_named_with_the_commands_that_check_and_rebuild_it(split_copy):
    part = sorted(split_copy.glob("part-*.arrow"))[1]
    with open(part, "r+b") as f:
        f.truncate(part.stat().st_size - 1000)
    msg = damage_message(split_copy)  # was pyarrow's bare "OSError: Expected to be able to read 79976 bytes"
    assert msg.startswith(f"{part}: damaged (") and "truncated" in msg
    assert f"slimpajama verify {split_copy}" in msg
    assert "rebuild it with: slimpajama shards " in msg and f"--out {split_copy.parent} --verify-outputs" in msg
    # the CLI says it in one line too
    r = CliRunner().invoke(main, ["verify", str(split_copy)])
    assert r.exit_code == 1 and str(part) in r.stderr and "rebuild it with" in r.stderr


def test_a_flipped_byte_is_found_on_request_and_a_missing_file_always(split_copy):
    part = sorted(split_copy.glob("part-*.arrow"))[0]
    data = bytearray(part.read_bytes())
    data[-5000] ^= 0xFF  # in the tokens: the same size, readable, other data
    part.write_bytes(bytes(data))
    assert len(PackedDataset(str(split_copy))) > 0  # sizes and rows only, by default: cheap
    msg = damage_message(split_copy, verify=True)
    assert msg.startswith(f"{part}: damaged (its SHA-256 is not the index's") and "slimpajama verify" in msg
    part.unlink()
    assert damage_message(split_copy).startswith(f"{part}: damaged (missing)")


def test_a_missing_path_and_a_packed_set_get_their_own_message(split_copy, tmp_path):
    with pytest.raises(SlimPajamaError, match="no such directory"):
        ShardReader(str(tmp_path / "nope"))
    msg = damage_message(split_copy.parent)
    assert "is a packed set of splits, not one split: pass one of" in msg and str(split_copy) in msg


def test_stats_reads_an_export_dataset_folder_and_the_reader_says_whose_it_is(cache, tmp_path):
    tokens = str(cache / "tokens" / "gpt2")
    for fmt in ("litdata", "mds"):
        run_export(tokens, str(tmp_path / fmt / "train"), fmt=fmt)
        # the dataset folder itself (litdata's or streaming's own index.json in it), as users point at it
        r = CliRunner().invoke(main, ["stats", str(tmp_path / fmt / "train")])
        assert r.exit_code == 0, r.output
        assert "export train: train split" in r.stdout and "not a packed shard index" not in r.output
        msg = damage_message(tmp_path / fmt / "train")
        assert "another library's index.json" in msg


def test_stats_lines_fit_80_columns_for_exports_and_intermediate_folders(cache, clean_pipeline, tmp_path):
    from slimpajama.cli.render import print_stats
    from slimpajama.tools.stats import compute

    tokens = str(cache / "tokens" / "gpt2")
    for fmt in ("megatron", "mds"):  # their titles wrapped over 3-4 lines
        run_export(tokens, str(tmp_path / fmt / "train"), fmt=fmt)
        console = Console(width=80, record=True, file=io.StringIO())
        print_stats(compute(str(tmp_path / fmt)), console)
        lines = console.export_text().splitlines()
        assert max(map(len, lines)) <= 80 and lines[0].startswith(("megatron-mmap", "mosaicml-mds")), lines
        assert len([line for line in lines if line and not line.startswith(("all", "dataset", "─"))]) <= 2
    deep = tmp_path / ("a-long-folder-name-" * 2) / "dedup" / "_minhash"  # its line was 83 characters
    shutil.copytree(clean_pipeline[0] / "work" / "dedup" / "_minhash", deep)
    r = CliRunner().invoke(main, ["stats", str(deep)])
    assert r.exit_code == 0 and "no figures to show" in r.stdout, r.output
    assert all(len(line) <= 80 or line == str(deep) for line in r.stdout.splitlines())  # a long path alone


def test_a_file_size_below_one_batch_is_said_once(cache, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="slimpajama"):
        run_shards(str(cache / "tokens" / "gpt2"), "", 256, out_dir=str(tmp_path / "s"), file_bytes=30_000,
                   progress=False)
    said = [r.getMessage() for r in caplog.records if "--file-bytes" in r.getMessage()]
    assert len(said) == 1 and "below one record batch of 1,024 rows x 257 tokens" in said[0]
    assert "holds 1,024 rows" in said[0]


def test_task_bytes_help_gives_zero_one_meaning():
    r = CliRunner().invoke(main, ["shards", "--help"])
    text = " ".join(r.output.split())
    assert "(0: one task per split)" in text and "one task per file" not in text


def test_export_has_quiet(cache, tmp_path):
    r = CliRunner().invoke(main, ["export", str(cache / "tokens" / "gpt2"), "--out", str(tmp_path / "e" / "train"),
                                  "--quiet"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines() == [f"wrote {tmp_path / 'e' / 'train'}.json"]
