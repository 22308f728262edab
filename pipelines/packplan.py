"""The pack plan: a split's rows planned from the token cache's document lengths alone (no token is read), saved
in `_plan/` for the pack tasks: the documents' stream positions (concat) or the rows' pieces (bestfit), a file of
each per plan task, and the seeded row shuffle (`order/<split>.order.npy`), made once the tasks have counted the
rows.

The split's lengths are streamed, never held. Its token files' sizes give the total and each file's place in the
token stream, so only the files holding the range's bounds are read to find its first and last document. Concat
is one task per split (its plan is a copy of the positions); best fit one per TASK_DOCS documents of the range
(a whole number of its buffers, so the tasks' rows, one task after another, are the rows of one plan of the split:
ChunkedPlan reads them so). A task reads its files once (a batch at a time, one file open at a time: a split has a
file per tokenize task, tens of thousands at RedPajama's scale), runs best fit a million documents at a time and
appends the outputs to their files as they are made; the order is shuffled in place in its own file; so no task's
memory grows with the split. tests/test_pack_plan.py compares the files with an in-memory plan of the whole split;
a docs file whose lengths do not add up to its tokens file is a damaged cache, an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from slimpajama.core import defaults
from slimpajama.core.ledger import Ledger
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.writers import NpyAppender, save_shuffled_range
from slimpajama.packers.pack import bestfit_plan, check_range, concat_cut_docs

from .runner import StageReport, run_stage
from .stage import Stage, Task, TaskResult

BATCH_ROWS = 1 << 16  # documents per read batch of a cache file
BUFFER_DOCS = 8192  # best fit's buffer: documents sorted and packed together (pinned: it shapes the rows); the
# driver passes it to the plan tasks with their documents
CHUNK_DOCS = 1 << 20  # documents per best-fit call, rounded up to whole buffers, so the calls give the one plan
TASK_DOCS = 16 << 20  # documents per best-fit plan task (~3-4 s of best fit), rounded up to whole buffers


class PlanStage(Stage):
    """A task per part of a split's documents (`plan_tasks`): its rows planned from the cache's document lengths,
    saved for the pack tasks (`<split>.<part>.<array>.npy`)."""

    name = "pack-plan"
    keeps_ledger = False

    def __init__(self, seq: int, packing: str, range_: tuple[float, float], seed: int):
        if packing not in ("concat", "bestfit"):
            raise SlimPajamaError(f"--packing must be concat or bestfit, not {packing!r}")
        self.seq, self.packing, self.seed = seq, packing, seed
        self.range = check_range(range_)

    def fingerprint(self) -> dict:
        return {"stage": self.name, "seq": self.seq, "packing": self.packing, "range": list(self.range),
                "seed": self.seed}

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        p = task.params
        name = f"{p['split']}.{p['part']:05d}"
        path = lambda array: storage.join(out_dir, f"{name}.{array}.npy")  # noqa: E731
        plan = concat_outputs if self.packing == "concat" else bestfit_outputs
        made = plan(SplitFiles.of(task), Bounds(*p["docs"], p["t0"], p["t1"]), self.seq, path, p["buffer_docs"])
        extra = {"rows": made.rows, "docs": p["docs"][1] - p["docs"][0], "padding_tokens": made.padding,
                 "docs_cut": made.cut, "concat_cut": made.concat_cut, "tokens_per_source": made.tokens_per_source}
        return TaskResult(outputs=[f"{name}.{array}.npy" for array in made.files], ledger=Ledger(self.name),
                          extra=extra)


class OrderStage(Stage):
    """A task per split, once its plan tasks have counted its rows: the seeded shuffle of them (`<split>.order.npy`),
    which the pack tasks read a shard file's rows from."""

    name = "pack-order"
    keeps_ledger = False

    def __init__(self, plan: PlanStage):
        self.plan = plan

    def fingerprint(self) -> dict:  # the plan's: a run of it per layout (its bytes depend on the rows and seed)
        return {**self.plan.fingerprint(), "stage": self.name}

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        save_shuffled_range(storage.join(out_dir, f"{task.key}.order.npy"), task.params["rows"], self.plan.seed)
        return TaskResult(outputs=[f"{task.key}.order.npy"], ledger=Ledger(self.name))


def plan_tasks(split_task: Task, stage: PlanStage) -> tuple[list[Task], dict]:
    """A split's plan tasks, each given the cache files that hold its documents, and the split's figures that its
    range's bounds give. Concat: one task (its plan is a copy of the documents' positions). Best fit: one per
    TASK_DOCS documents of the range, whole best-fit buffers, so the tasks' rows are the one plan's in order."""
    split, files = split_task.key, SplitFiles.of(split_task)
    range_ = stage.range if split == "train" else defaults.PACK_RANGE
    total = sum(files.tokens)
    d0, d1, t0, t1 = range_bounds(files, *(math.ceil(x * total) for x in range_))
    step = -(-TASK_DOCS // BUFFER_DOCS) * BUFFER_DOCS if stage.packing == "bestfit" else max(d1 - d0, 1)
    ends = np.cumsum(files.rows, dtype=np.int64)  # documents up to each file's end
    tasks = []
    for part, lo in enumerate(range(d0, max(d1, d0 + 1), step)):
        hi = min(lo + step, d1)
        i0 = int(np.searchsorted(ends, lo, side="right"))  # the file holding document lo, then up to hi - 1's
        i1 = int(np.searchsorted(ends, hi, side="left")) + 1 if hi > lo else i0
        skip = int(ends[i0 - 1]) if i0 else 0
        side = {kind: task_files[i0:i1] for kind, task_files in split_task.side.items()}
        params = {**split_task.params, "split": split, "part": part, "docs": [lo - skip, hi - skip],
                  "first_token": files.first[i0] if i0 < len(files.first) else 0, "file_rows": files.rows[i0:i1],
                  "t0": t0, "t1": t1, "buffer_docs": BUFFER_DOCS}
        # a marker file in _state/, no folder named for the split: HF's load_dataset takes the files under any
        # folder named train/ for that split's (the majority extension decides what it reads)
        tasks.append(Task(f"{split}.plan-{part:05d}", (), params, side=side))
    summary = {"t0": t0, "range": list(range_), "docs": d1 - d0, "cache_tokens": total, "range_tokens": t1 - t0}
    return tasks, summary


ORDER_DIR = "order"  # in the plan's folder: the order tasks' own (a stage's folder holds its tasks' outputs alone)


def run_plan(stage: PlanStage, split_tasks: list[Task], out_dir: str, **run) -> tuple[dict, StageReport]:
    """Plan every split: its plan tasks, then its order task. -> ({split: (its plan figures, its plan files: the
    order first, then each plan task's in order)}, the plan stage's report with the order stage's seconds added)."""
    parts, summaries = [], {}
    for t in split_tasks:
        tasks, summaries[t.key] = plan_tasks(t, stage)
        parts += tasks
    plans = run_stage(stage, parts, out_dir, **run)
    figures = {split: split_plan(summary, [m["extra"] for t, m in zip(parts, plans.markers, strict=True)
                                           if t.params["split"] == split])
               for split, summary in summaries.items()}
    order_tasks = [Task(split, (), {"rows": f["rows"]}) for split, f in figures.items()]
    orders = run_stage(OrderStage(stage), order_tasks, storage.join(out_dir, ORDER_DIR), **run)
    plans.seconds += orders.seconds
    files = {split: [orders.output_file(rel) for rel in m["outputs"]] for split, m in
             zip(figures, orders.markers, strict=True)}
    for t, m in zip(parts, plans.markers, strict=True):
        files[t.params["split"]] += [plans.output_file(rel) for rel in m["outputs"]]
    return {split: (figures[split], tuple(files[split])) for split in figures}, plans


def split_plan(summary: dict, parts: list[dict]) -> dict:
    """A split's plan figures (what its index says) from its bounds' and its plan tasks' (their markers' extra)."""
    per_source: dict[str, int] = {}
    for part in parts:
        for source, n in part["tokens_per_source"].items():
            per_source[source] = per_source.get(source, 0) + n
    add = lambda key: sum(part[key] for part in parts)  # noqa: E731
    return {"rows": add("rows"), "t0": summary["t0"], "range": summary["range"], "padding_tokens": add("padding_tokens"),
            "docs": summary["docs"], "docs_cut": add("docs_cut"), "concat_cut": add("concat_cut"),
            "cache_tokens": summary["cache_tokens"], "range_tokens": summary["range_tokens"],
            "tokens_per_source": dict(sorted(per_source.items()))}


@dataclass
class SplitFiles:
    """A split's cache files in order, each with its first token's stream position, its tokens (the size of its
    .tokens.bin) and its documents (its docs.parquet's footer)."""

    docs: tuple
    first: list[int]
    tokens: list[int]
    rows: list[int]

    @classmethod
    def of(cls, task: Task) -> SplitFiles:
        """The task's files: a whole split's (the driver's: every footer read), or a plan task's (its first token
        and its files' rows are params the driver gave it: the footers are not read again)."""
        itemsize = np.dtype(task.params["cache"]["dtype"]).itemsize
        tokens = [f.size // itemsize for f in task.side["tokens"]]
        rows = task.params.get("file_rows")
        if rows is None:
            rows = []
            for f in task.side["docs"]:  # one file open at a time: a split has a file per tokenize task
                with storage.open_parquet(f.path) as pf:
                    rows.append(pf.metadata.num_rows)
        first = (np.cumsum([task.params.get("first_token", 0)] + tokens[:-1]).astype(int).tolist()
                 if tokens else [])
        return cls(tuple(task.side["docs"]), first, tokens, rows)

    def lengths(self, i: int, names: dict[str, int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(tokens per document as int64, source codes as int32 or None) of file i, a batch at a time; with `names`,
        sources are coded through it (new names get the next code). A file whose documents do not add up to its
        tokens file is a damaged cache, said once read to its end."""
        f, seen = self.docs[i], 0
        columns = ["tokens"] if names is None else ["source", "tokens"]
        with storage.open_parquet(f.path) as pf:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                lens = batch.column("tokens").to_numpy().astype(np.int64)
                codes = None
                if names is not None:
                    enc = batch.column("source").dictionary_encode()
                    ids = np.array([names.setdefault(v, len(names)) for v in enc.dictionary.to_pylist()], np.int32)
                    codes = ids[enc.indices.to_numpy()]
                seen += int(lens.sum())
                yield lens, codes
        if seen != self.tokens[i]:
            raise SlimPajamaError(f"token cache file {f.rel}: its documents hold {seen:,} tokens but its tokens file "
                                  f"{self.tokens[i]:,}: the cache is damaged; rerun `slimpajama tokens` into a new "
                                  "folder")


class Bounds(NamedTuple):
    """A range's documents [d0, d1) and the tokens they span [t0, t1) in a split's token stream."""

    d0: int
    d1: int
    t0: int
    t1: int


class PlanMade(NamedTuple):
    """What a plan task wrote and counted."""

    rows: int
    padding: int  # padding tokens of its rows
    files: list[str]  # the arrays it wrote (`<split>.<part>.<array>.npy`)
    cut: int  # documents a row boundary cuts
    concat_cut: int  # ... that concat packing would cut (best fit's saving is the difference)
    tokens_per_source: dict[str, int]


def range_bounds(split: SplitFiles, a: int, b: int) -> Bounds:
    """The documents whose first token lies in [a, b) (in_range's rule: d0 and d1 count the first-token
    positions below each bound, as a searchsorted over all of them would) and the tokens they span.
    Only a file that holds a bound is read: the others' documents lie wholly on one side of each."""
    d0 = d1 = t1 = 0
    t0 = None
    for i, (f0, n, rows) in enumerate(zip(split.first, split.tokens, split.rows, strict=True)):
        f1 = f0 + n  # its documents start in [f0, f1]
        if not rows:
            continue
        if f0 >= b:
            break
        if f1 < a or f0 >= a and f1 < b:
            inside = f0 >= a
            if inside and t0 is None:
                t0 = f0
            d0, d1, t1 = d0 + (0 if inside else rows), d1 + rows, f1
            continue
        pos = f0
        for lens, _ in split.lengths(i):
            starts = np.cumsum(lens) - lens + pos
            k0, k1 = (int(np.searchsorted(starts, x)) for x in (a, b))
            if t0 is None and k0 < len(lens):
                t0 = int(starts[k0])
            if k1:
                t1 = int(starts[k1 - 1] + lens[k1 - 1])
            d0, d1, pos = d0 + k0, d1 + k1, pos + int(lens.sum())
    return Bounds(d0, d1, t0, t1) if d1 > d0 else Bounds(0, 0, 0, 0)


def range_batches(split: SplitFiles, d0: int, d1: int, names: dict[str, int]):
    """(first-token positions, lengths, source codes) of documents d0..d1, a batch at a time, from the file that
    holds d0 on."""
    i = 0
    for k, (pos, rows) in enumerate(zip(split.first, split.rows, strict=True)):
        if i >= d1:
            break
        if i + rows <= d0:
            i += rows
            continue
        for lens, codes in split.lengths(k, names):
            lo, hi = max(d0 - i, 0), min(d1 - i, len(lens))
            if lo < hi:
                starts = np.cumsum(lens) - lens + pos
                yield starts[lo:hi], lens[lo:hi], codes[lo:hi]
            i, pos = i + len(lens), pos + int(lens.sum())
            if i >= d1:
                break


class SourceTokens:
    """Tokens per source, summed a batch at a time (bincount's float sums are exact: a batch is far below 2^53)."""

    def __init__(self):
        self.names: dict[str, int] = {}
        self.sums: list[int] = []

    def add(self, codes: np.ndarray, lens: np.ndarray) -> None:
        per = np.bincount(codes, weights=lens) if len(codes) else np.zeros(0)
        self.sums += [0] * (len(self.names) - len(self.sums))
        for c in np.flatnonzero(per):
            self.sums[c] += int(per[c])

    def to_dict(self) -> dict[str, int]:
        self.sums += [0] * (len(self.names) - len(self.sums))
        return {name: self.sums[c] for name, c in sorted(self.names.items()) if self.sums[c]}


def concat_outputs(split: SplitFiles, bounds: Bounds, seq: int, path, buffer_docs: int) -> PlanMade:
    """The concat plan: rows cut every `seq` tokens from t0, so only the documents' positions are saved. A source's
    tokens are its documents' up to where the last row ends (the document that row cuts gives its part before)."""
    d0, d1, t0, t1 = bounds
    rows = max(0, (t1 - t0 - 1) // seq)
    used_end = t0 + rows * seq + 1 if rows else t0
    tokens, cut, last = SourceTokens(), 0, None
    with NpyAppender(path("doc_starts"), np.int64) as out:
        for starts, lens, codes in range_batches(split, d0, d1, tokens.names):
            out.write(starts)
            cut += concat_cut_docs(starts, lens, t0, seq)
            n = int(np.searchsorted(starts, used_end))
            tokens.add(codes[:n], lens[:n])
            if n:
                last = (int(codes[n - 1]), int(starts[n - 1] + lens[n - 1]) - used_end)
    if last is not None and last[1] > 0:
        tokens.sums[last[0]] -= last[1]
    return PlanMade(rows, 0, ["doc_starts"], cut, cut, tokens.to_dict())


def bestfit_outputs(split: SplitFiles, bounds: Bounds, seq: int, path, buffer_docs: int) -> PlanMade:
    """The best-fit plan, whole buffers of `buffer_docs` per call (CHUNK_DOCS documents or just above): its pieces
    and each row's first piece (row_ptr)."""
    d0, d1, t0, t1 = bounds
    if (t1 - t0 - 1) // seq <= 0:  # the range holds fewer tokens than a row: no rows, as concat makes none (a
        d1 = d0  # best-fit row of them would be nearly all padding)
    chunk = -(-CHUNK_DOCS // buffer_docs) * buffer_docs
    tokens, concat_cut, cut, rows, padding, pieces = SourceTokens(), 0, 0, 0, 0, 0
    held_starts, held_lens = [], []  # documents not planned yet: less than a chunk
    with (NpyAppender(path("piece_start"), np.int64) as p_start, NpyAppender(path("piece_len"), np.int64) as p_len,
          NpyAppender(path("row_ptr"), np.int64) as row_ptr):
        row_ptr.write(np.zeros(1, np.int64))

        def plan(starts, lens):
            nonlocal cut, rows, padding, pieces
            part, c = bestfit_plan(starts, lens, seq, pad_id=0, buffer_docs=buffer_docs)
            p_start.write(part.piece_start)
            p_len.write(part.piece_len)
            row_ptr.write(part.row_ptr[1:] + pieces)
            cut, rows, pieces = cut + c, rows + part.rows, pieces + len(part.piece_start)
            padding += int(part.padding().sum())

        for starts, lens, codes in range_batches(split, d0, d1, tokens.names):
            concat_cut += concat_cut_docs(starts, lens, t0, seq)
            tokens.add(codes, lens)
            held_starts.append(starts)
            held_lens.append(lens)
            while sum(map(len, held_starts)) >= chunk:
                starts, lens = np.concatenate(held_starts), np.concatenate(held_lens)
                held_starts, held_lens = [starts[chunk:]], [lens[chunk:]]
                plan(starts[:chunk], lens[:chunk])
        if sum(map(len, held_starts)):
            plan(np.concatenate(held_starts), np.concatenate(held_lens))
    return PlanMade(rows, padding, ["piece_start", "piece_len", "row_ptr"], cut, concat_cut, tokens.to_dict())
