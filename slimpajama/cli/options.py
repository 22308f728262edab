"""Options several commands share, defined once: sizes, fractions of a split, and the option groups (reading a
corpus, running on Ray) as dataclasses that generate their click options and reach a command as one object.

Defaults come from `slimpajama.core.defaults` (which imports nothing), so the command line shows them without
loading the stages' packages.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import ClassVar

import click

from slimpajama.core import defaults
from slimpajama.errors import SlimPajamaError


def parse_size(value: str | int | None) -> int | None:
    """'64MB', '2GiB', '1e9', '0' -> bytes (0 or 'none' -> None)."""
    if value is None or str(value).lower() in ("0", "none", "off"):
        return None
    s = str(value).strip().lower().replace("ib", "b")
    units = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "b": 1}
    for u, mult in units.items():
        if s.endswith(u):
            return int(float(s[: -len(u)]) * mult)
    return int(float(s))


def size_text(n: int) -> str:
    """512 << 20 -> '512MB': a size default as --help shows it."""
    for unit, shift in (("TB", 40), ("GB", 30), ("MB", 20), ("KB", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


class SizeType(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        try:
            size = parse_size(value)
        except (ValueError, OverflowError):
            size = -1
        if size is not None and size < 0:
            self.fail(f"{value!r} is not a size like 512MB or 2GB", param, ctx)
        return size


SIZE = SizeType()


def parse_range(value: str | tuple[float, float]) -> tuple[float, float]:
    """'0:0.75' -> (0.0, 0.75): a contiguous fraction A:B of a split's tokens, 0 <= A < B <= 1 (ValueError)."""
    if isinstance(value, tuple):
        return value
    parts = str(value).split(":")
    try:
        a, b = (float(x) for x in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        a = b = None
    if a is None or not 0 <= a < b <= 1:
        raise ValueError(f"{value!r} is not A:B with 0 <= A < B <= 1, e.g. 0:0.75")
    return a, b


class RangeType(click.ParamType):
    """--range A:B, checked before any work: a mistake is a usage error (exit 2)."""

    name = "A:B"

    def convert(self, value, param, ctx):
        try:
            if isinstance(value, list | tuple) and len(value) == 2:  # [a, b] from a --config file
                value = f"{value[0]}:{value[1]}"
            return parse_range(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


RANGE = RangeType()


def range_text(range_: tuple[float, float]) -> str:
    return f"{range_[0]:g}:{range_[1]:g}"


def seed_option(default: int, help: str):
    """--seed: a non-negative integer (numpy's generators refuse a negative one), checked before any work."""
    return click.option("--seed", type=click.IntRange(min=0), default=default, show_default=True, help=help)


def at_least(flag: str, value: int | None, minimum: int, why: str) -> int:
    """A size flag below a sane minimum would plan millions of tasks or hold everything at once: refused."""
    if value is None or value < minimum:
        raise SlimPajamaError(f"{flag} {value or 0} is below the minimum {minimum:,} bytes ({why})")
    return value


def check_bucket_bytes(value: int | None) -> int:
    return at_least("--bucket-bytes", value, 64 << 10, "it sets the number of shuffle buckets")


class OptionGroup:
    """A dataclass of options: `@Group.apply` adds its click options to a command, which then receives one
    instance under `PARAM` instead of a parameter per option."""

    PARAM: ClassVar[str]

    @classmethod
    def click_options(cls) -> list:
        """The click options, in the order --help lists them; one per field (plus any without a value)."""
        raise NotImplementedError

    @classmethod
    def apply(cls, f):
        names = [fl.name for fl in dataclasses.fields(cls)]

        @functools.wraps(f)
        def command(*args, **kwargs):
            kwargs[cls.PARAM] = cls(**{n: kwargs.pop(n) for n in names})
            return f(*args, **kwargs)

        for option in reversed(cls.click_options()):  # click lists the last one applied first
            command = option(command)
        return command


def task_bytes_option(what: str, zero: str = "one task per file", parts: bool = True):
    """--task-bytes of a stage that splits its work (`what`: what one task takes; `zero`: what 0 means; `parts`:
    it cuts files into parts, spans.part_bytes)."""
    finer = (f"; an input of fewer than {defaults.MIN_PARTS} parts is cut into {defaults.MIN_PARTS} of at least "
             f"{size_text(defaults.MIN_PART_BYTES)}") if parts else ""
    return click.option("--task-bytes", type=SIZE, default=size_text(defaults.TASK_BYTES), show_default=True,
                        help=f"{what} (0: {zero}){finer}. Never changes the output.")


@dataclasses.dataclass(frozen=True)
class ReadFlags(OptionGroup):
    """How a command reads a corpus: what `slimpajama.io.reading.ReadOptions` and the task split take."""

    PARAM: ClassVar[str] = "read"
    verify_inputs: bool
    source_map: str | None
    task_bytes: int | None
    max_doc_bytes: int | None
    on_error: str
    source: str | None

    @classmethod
    def click_options(cls) -> list:
        return [
            click.option("--verify-inputs", is_flag=True,
                         help="Identify input files by a SHA-256 of their content (default: size and modification "
                              "time), so a rerun notices any change; costs one read of the inputs per run."),
            click.option("--source-map", default=None,
                         help="Extra source names for folders and red_pajama_subset values: NAME=SOURCE,... or a "
                              "JSON file (RedPajama-1T's arxiv/book/c4/common_crawl/github/stackexchange/wikipedia "
                              "map to SlimPajama's names by default)."),
            task_bytes_option("Split plain .jsonl and parquet files bigger than this into parts read by separate "
                              "tasks"),
            click.option("--max-doc-bytes", type=SIZE, default=size_text(defaults.MAX_DOC_BYTES), show_default=True,
                         help="Records of a raw corpus larger than this are bad input (0: no limit); a stage's "
                              "output is read whole."),
            click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
                         help="skip: count bad input under bad_input and log it in _errors.jsonl; fail: stop at the "
                              "first bad record, naming file and line."),
            click.option("--source", default=None,
                         help="Source name for files with neither meta.redpajama_set_name nor a source folder."),
        ]

    def options(self, **more):
        """As the readers take them (`more`: e.g. batch_rows)."""
        from slimpajama.core.sources import parse_source_map
        from slimpajama.io.reading import ReadOptions

        return ReadOptions(source=self.source, on_error=self.on_error, max_doc_bytes=self.max_doc_bytes,
                           source_map=parse_source_map(self.source_map), **more)


@dataclasses.dataclass(frozen=True)
class DecontaminateFlags(OptionGroup):
    """The decontamination settings, one definition for `decontaminate` and (as --eval-ngram, ...) `pipeline`."""

    PARAM: ClassVar[str] = "contamination"
    eval_paths: tuple[str, ...]
    eval_ngram: int
    eval_min_words: int
    eval_mode: str
    eval_fields: tuple[str, ...]
    PREFIX: ClassVar[str] = ""  # pipeline: "eval-" (its --ngram is MinHash's)

    @classmethod
    def click_options(cls) -> list:
        p = cls.PREFIX
        return [
            click.option("--eval", "eval_paths", multiple=True, required=not p, type=click.Path(exists=False),
                         help="An evaluation set (repeatable): a .jsonl/.json/.parquet file (an item per row) or .txt "
                              "(an item per non-empty line), or a folder of them; local files only."
                              + (" Runs decontaminate between dedup and release." if p else "")),
            click.option(f"--{p}ngram", "eval_ngram", type=click.IntRange(min=1),
                         default=defaults.DECONTAMINATE_NGRAM, show_default=True,
                         help="A document is contaminated when it shares this many consecutive words (of the "
                              "cleaned view) with an item."),
            click.option(f"--{p}min-words", "eval_min_words", type=click.IntRange(min=1),
                         default=defaults.DECONTAMINATE_MIN_WORDS, show_default=True,
                         help="An item shorter than the n-gram is matched whole if it has at least this many words; "
                              "shorter items are skipped (counted)."),
            click.option(f"--{p}mode", "eval_mode", type=click.Choice(["drop", "cut"]), default="drop",
                         show_default=True,
                         help="drop: remove the document; cut: remove each match and "
                              f"{defaults.DECONTAMINATE_WINDOW} characters either side, keeping pieces of at least "
                              "--min-chars."),
            click.option("--eval-field", "eval_fields", multiple=True,
                         help="A field an item's text is read from (repeatable; default: every string of the row)."),
        ]

    def config(self, min_chars: int):
        from slimpajama.pipelines.decontaminate import DecontaminateConfig

        return DecontaminateConfig(eval=tuple(self.eval_paths), ngram=self.eval_ngram, min_words=self.eval_min_words,
                                   mode=self.eval_mode, eval_fields=tuple(self.eval_fields), min_chars=min_chars)


class PipelineDecontaminateFlags(DecontaminateFlags):
    PREFIX: ClassVar[str] = "eval-"


@dataclasses.dataclass(frozen=True)
class MinHashFlags(OptionGroup):
    """The MinHash and LSH settings, one definition for `dedup` and `pipeline`."""

    PARAM: ClassVar[str] = "minhash"
    ngram: int
    num_perm: int
    bands: int | None
    rows: int | None
    threshold: float | None
    hash_mode: str

    @classmethod
    def click_options(cls) -> list:
        return [
            click.option("--ngram", type=click.IntRange(min=1), default=defaults.NGRAM, show_default=True,
                         help="Character n-gram width."),
            click.option("--num-perm", type=click.IntRange(min=1), default=defaults.NUM_PERM, show_default=True),
            click.option("--bands", type=click.IntRange(min=1), default=None,
                         help=f"LSH bands (default {defaults.BANDS}, or from --threshold)."),
            click.option("--rows", type=click.IntRange(min=1), default=None,
                         help=f"Rows per band (default {defaults.ROWS})."),
            click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                         help=f"Jaccard threshold: picks bands x rows like datasketch's MinHashLSH (default "
                              f"{defaults.THRESHOLD} -> {defaults.BANDS} x {defaults.ROWS})."),
            click.option("--hash", "hash_mode", type=click.Choice(["fast", "slimpajama"]), default="fast",
                         show_default=True,
                         help="slimpajama: datasketch MinHash signatures, bit-identical to SlimPajama's; fast: one "
                              "hash per shingle (one-permutation hashing, densified), compiled."),
        ]

    def config(self):
        """The `MinHashConfig` these flags name (a mistake in them is one error line)."""
        from slimpajama.core.minhash import MinHashConfig

        common = dict(ngram=self.ngram, hash=self.hash_mode)
        threshold = defaults.THRESHOLD if self.threshold is None else self.threshold
        try:
            if self.bands is None and self.rows is None:
                return MinHashConfig.for_threshold(threshold, self.num_perm, **common)
            return MinHashConfig(num_perm=self.num_perm, bands=self.bands or defaults.BANDS,
                                 rows=self.rows or defaults.ROWS, threshold=threshold, **common)
        except ValueError as e:
            raise SlimPajamaError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class TokenizerFlags(OptionGroup):
    """Which tokenizer, its EOS / BOS, and who encodes: one definition for `tokenize` and `pipeline`."""

    PARAM: ClassVar[str] = "tok"
    encoding: str
    tokenizer: str | None
    eos: str | None
    bos: bool
    bos_token: str | None
    engine: str

    @classmethod
    def click_options(cls) -> list:
        return [
            click.option("--encoding", default=defaults.ENCODING, show_default=True,
                         help="gpt2 (= r50k_base, BTLM's), another tiktoken encoding name, or the .tiktoken file of "
                              "one (cl100k_base, o200k_base, ...: recognized by its SHA-256)."),
            click.option("--tokenizer", default=None, metavar="PATH",
                         help="A model's tokenizer instead: a Hugging Face tokenizer.json, a SentencePiece "
                              "tokenizer.model, or the model folder holding one (local; the cache goes to "
                              "<out>/<folder or file name>/)."),
            click.option("--eos", default=None, metavar="TOKEN",
                         help="--tokenizer's end-of-document token (default: the eos_token of a "
                              "tokenizer_config.json beside it, else a known one such as <|endoftext|> or </s>)."),
            click.option("--bos", is_flag=True,
                         help="Prepend --tokenizer's BOS to every document (as Llama-style models expect)."),
            click.option("--bos-token", default=None, metavar="TOKEN", help="The BOS token to prepend (implies --bos)."),
            click.option("--engine", type=click.Choice(["auto", "fast", "reference"]), default="auto",
                         show_default=True,
                         help="auto: the compiled fastokens engine where it reproduces the tokenizer (the same ids; "
                              "a sample of every task re-checked), else the tokenizer's own library, with a notice. "
                              "fast / reference: force one."),
        ]

    def spec(self) -> str:
        """The tokenizer as run_tokenize takes it: a model's tokenizer file or folder, else the encoding."""
        if self.tokenizer and self.encoding != defaults.ENCODING:
            raise SlimPajamaError("give either --encoding (tiktoken) or --tokenizer (a model's tokenizer file), "
                                  "not both")
        return self.tokenizer or self.encoding

    def bos_spec(self) -> str | None:
        """None: no BOS; "": the tokenizer's own; else the token."""
        return self.bos_token if self.bos_token else ("" if self.bos else None)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def _load_config(ctx, param, value):
    """--config FILE: a TOML table of the command's options by their flag names (`min-chars = 300`, `seq =
    [2048, 8192]`, `inputs = ["data/raw"]`), the defaults of this run; flags on the command line still win."""
    if not value:
        return
    import tomllib

    try:
        with open(value, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise click.BadParameter(f"cannot read {value}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{value} is not TOML: {e}") from None
    by_flag = {max(p.opts, key=len).lstrip("-") if p.opts else p.name: p for p in ctx.command.params if p.name}
    by_flag.update({p.name: p for p in ctx.command.params if p.name})
    unknown = sorted(k for k in table if k not in by_flag or by_flag[k].name in ("config", "print_config"))
    if unknown:
        raise click.BadParameter(f"{value} sets {', '.join(unknown)}, which `{ctx.command.name}` has no option for")
    ctx.default_map = {**(ctx.default_map or {}), **{by_flag[k].name: v for k, v in table.items()}}


def config_options(f):
    """--config FILE and --print-config: a whole run's settings in one TOML file (see _load_config)."""
    f = click.option("--print-config", is_flag=True,
                     help="Print this run's settings as TOML (for --config) and exit without running.")(f)
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_load_config,
                        help="A TOML file of this command's options by flag name (e.g. min-chars = 300, seq = "
                             "[2048, 8192]), including inputs; flags given on the command line win.")(f)


def config_toml(ctx) -> str:
    """The TOML of every option of the command as this run has it (what --config reads back)."""
    lines = []
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if not p.expose_value or p.name == "print_config" or value is None:  # (--config and --wait expose none)
            continue
        flag = max(p.opts, key=len).lstrip("-") if isinstance(p, click.Option) else p.name
        lines.append(f"{flag} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _set_wait(ctx, param, value):
    from slimpajama.pipelines import lock

    lock.configure(bool(value))


@dataclasses.dataclass(frozen=True)
class RayFlags(OptionGroup):
    """Where and how wide a command runs its Ray tasks, and how it reports."""

    PARAM: ClassVar[str] = "ray"
    as_json: bool
    quiet: bool
    ray_address: str | None
    workers: int | None

    @classmethod
    def click_options(cls) -> list:
        return [
            click.option("--json", "as_json", is_flag=True, help="Print the stage summary as JSON."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
            click.option("--ray-address", envvar="RAY_ADDRESS", default=None,
                         help="Join this Ray cluster instead of starting an embedded one (also $RAY_ADDRESS)."),
            click.option("--workers", type=click.IntRange(min=1), default=None,
                         help="Cap on parallel shard tasks (default: every CPU of the Ray cluster)."),
            click.option("--wait", is_flag=True, expose_value=False, callback=_set_wait,
                         help="If another run is writing the output directory, wait for it instead of failing."),
        ]

    def run(self) -> dict:
        """What every stage driver takes: workers, the cluster, the progress display."""
        from slimpajama.cli.progress import shard_progress

        return {"workers": self.workers, "ray_address": self.ray_address,
                "progress": None if self.quiet else shard_progress}
