"""What a path holds: the one place that recognizes a raw corpus, each stage's output, a token cache, packed shards
or a whole `data/` tree, so that every command accepts the output of the stage before it and says, in one line,
what it found when it is given something else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from slimpajama.errors import SlimPajamaError
from slimpajama.io import outputs, storage
from slimpajama.packers.exports import FORMATS
from slimpajama.packers.format import INDEX_FILE, foreign_index, index_path

from . import registry

# what each kind is called in messages, and the command that makes it: the stages' outputs from the registry
DESCRIPTIONS = {
    "corpus": ("a corpus (JSON lines / parquet files)", None),
    **{s.output: (s.description, s.command) for s in registry.STAGES},
    "unfinished_dedup": ("an unfinished dedup run (interrupted or failed: rerun that dedup to finish it)", None),
    "token_root": ("a token cache root (one folder per encoding)", "slimpajama tokenize"),
    "packed_split": (f"one split of packed shards ({INDEX_FILE})", "slimpajama shards"),
    "shards_root": ("a folder of packed shard sets", "slimpajama shards"),
    "intermediate": ("intermediate files", None),
    "data_root": ("a data/ tree (work/, slimpajama/, tokens/, shards/)", "make dedup"),
    "export": ("an export for other trainers (PREFIX.json and its datasets)", "slimpajama export"),
    "foreign": ("another library's dataset (an index.json not ours: litdata's or MosaicML streaming's)", None),
}
# a dedup's output is complete once its run file is written, last (after its audit and its index): without it the
# folder is an unfinished run that no later stage takes
DEDUP_RUN_FILE = "_dedup_run.json"
_STAGE_KINDS = {s.name: s.output for s in registry.STAGES}


@dataclass(frozen=True)
class PathKind:
    kind: str
    path: str
    stage: str | None = None  # the stage that wrote it, for stage outputs
    children: tuple[str, ...] = ()  # token_root: encodings; packed: splits; shards_root: packed sets

    def describe(self) -> str:
        what = DESCRIPTIONS[self.kind][0]
        return f"{what} of stage {self.stage}" if self.kind == "intermediate" and self.stage else what


def _isfile(path: str) -> bool:
    return storage.stat(path) is not None


def _subdirs(path: str) -> list[str]:
    if storage.is_remote(path):
        return sorted({rel.split("/", 1)[0] for rel, _ in storage.list_files(path) if "/" in rel})
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith((".", "_")))


def what_is(path: str) -> PathKind:
    """Recognize `path`; a path that does not exist is an error naming it."""
    path = str(path)
    if not storage.is_remote(path) and not os.path.exists(path):
        raise SlimPajamaError(f"input not found: {path}")
    if _isfile(path):
        return PathKind("corpus", path)
    manifest = outputs.read(path)
    if manifest is not None:
        stage = manifest.get("stage")
        if stage in _STAGE_KINDS:
            kind = _STAGE_KINDS[stage]
            if kind == registry.DEDUP.output and not _isfile(storage.join(path, outputs.STATE_DIR, DEDUP_RUN_FILE)):
                return PathKind("unfinished_dedup", path, stage)
            children = tuple(_subdirs(path)) if kind == "packed" else ()
            return PathKind(kind, path, stage, children)
        return PathKind("intermediate", path, stage)
    if index_path(path) is not None:
        return PathKind("packed_split", path, registry.PACK.name)
    if export_summaries(path):
        return PathKind("export", path, "export")
    dataset = export_dataset(path)
    if dataset is not None:
        return dataset
    if foreign_index(path):
        return PathKind("foreign", path)
    if _isfile(storage.join(path, "manifest.json")) and _isfile(storage.join(path, "ledger.json")):
        return PathKind("release", path, "release")  # a release written before _outputs.json existed
    subdirs = _subdirs(path)
    caches = [d for d in subdirs if (outputs.read(storage.join(path, d)) or {}).get("stage") == registry.TOKENIZE.name]
    if caches:
        return PathKind("token_root", path, children=tuple(caches))
    splits = [d for d in subdirs if index_path(storage.join(path, d)) is not None]
    if splits:
        return PathKind("packed", path, registry.PACK.name, tuple(splits))
    sets = [d for d in subdirs if (outputs.read(storage.join(path, d)) or {}).get("stage") == registry.PACK.name]
    if sets:
        return PathKind("shards_root", path, children=tuple(sets))
    # the Makefile's layout, recognized by the stage outputs in it (a corpus may have a source folder "work")
    release = registry.RELEASE.folder
    if any(outputs.read(storage.join(path, s.folder)) is not None for s in registry.LEDGER_STAGES if s.folder) or \
            (release in subdirs and _isfile(storage.join(path, release, "manifest.json"))):
        return PathKind("data_root", path)
    return PathKind("corpus", path)


def export_summaries(path: str) -> dict[str, dict]:
    """The PREFIX.json summaries of the exports in folder `path`, by prefix name ({} for none)."""
    if storage.is_remote(path):
        listed = [rel for rel, _ in storage.list_files(path)]
        names = {rel for rel in listed if "/" not in rel}
        folders = {rel.split("/", 1)[0] for rel in listed if "/" in rel}
    else:  # the folder's own entries only: a corpus folder may hold thousands below it
        entries = os.listdir(path)
        names = {n for n in entries if os.path.isfile(os.path.join(path, n))}
        folders = {n for n in entries if os.path.isdir(os.path.join(path, n))}
    out = {}
    for name in sorted(n for n in names if n.endswith(".json")):
        stem = name[: -len(".json")]
        # a dataset beside it (Megatron's .idx, or a chunked dataset's folder), else no export: a corpus's
        # .json files (JSON lines, up to 100 GB) are never opened
        if not any(n.startswith(stem) and n.endswith(".idx") for n in names) and \
                not any(f == stem or f.startswith(stem + "_") for f in folders):
            continue
        if (storage.file_size(storage.join(path, name)) or 0) > 64 << 20:  # no summary is that big
            continue
        try:
            summary = json.loads(storage.read_bytes(storage.join(path, name)))
        except ValueError:
            continue
        if isinstance(summary, dict) and summary.get("format") in FORMATS.values():
            out[stem] = summary
    return out


def export_dataset(path: str) -> PathKind | None:
    """A dataset folder of an export (litdata's or MDS's `index.json` and chunks, beside its PREFIX.json): the
    export of its parent folder, narrowed to that PREFIX (`children`)."""
    name = os.path.basename(str(path).rstrip("/"))
    parent = storage.parent(str(path).rstrip("/"))
    if not name or not parent or parent == path:
        return None
    for stem, summary in export_summaries(parent).items():
        if any(d.get("prefix") == name for d in summary.get("datasets", {}).values()):
            return PathKind("export", parent, "export", (stem,))
    return None


def require(path: str, accepted: tuple[str, ...], command: str) -> PathKind:
    """`what_is(path)`, or one line saying what was found there and what `command` needs."""
    found = what_is(path)
    if found.kind in accepted:
        return found
    wanted = " or ".join(DESCRIPTIONS[k][0] for k in accepted)
    maker = DESCRIPTIONS[accepted[0]][1]
    hint = f": run `{maker}` first, or pass its output" if maker else ""
    raise SlimPajamaError(f"{path} holds {found.describe()}; {command} needs {wanted}{hint}")


DOCUMENTS = registry.DOCUMENT_INPUTS  # what a document stage can read


def require_inputs(inputs, accepted: tuple[str, ...], command: str) -> list[str]:
    """`require` for every input that is a path (a glob is expanded later, by discovery): what each holds (a glob:
    "corpus")."""
    import glob

    kinds = []
    for spec in [inputs] if isinstance(inputs, str | os.PathLike) else inputs:
        spec = str(spec)
        if glob.has_magic(spec) and not os.path.exists(spec):
            kinds.append("corpus")
            continue
        kinds.append(require(spec, accepted, command).kind)
    return kinds


def inputs_text(inputs) -> str:
    """Inputs as a message names them: `a b`, not a Python list."""
    return " ".join(map(str, [inputs] if isinstance(inputs, str | os.PathLike) else inputs))


def packed_splits(path: str, command: str) -> list[str]:
    """The split folders (with an index) of a packed shard set, a split itself, or every set of a shards root."""
    found = require(path, ("packed", "packed_split", "shards_root"), command)
    if found.kind == "packed_split":
        return [path]
    if found.kind == "packed":
        return [storage.join(path, s) for s in found.children]
    return [split for child in found.children for split in packed_splits(storage.join(path, child), command)]


def train_split(path: str, command: str = "train") -> str:
    """A packed split to train on: the split itself, or the `train` split of a packed shard set."""
    found = require(path, ("packed_split", "packed"), command)
    if found.kind == "packed_split":
        return path
    if "train" not in found.children:
        raise SlimPajamaError(f"{path} holds packed shards without a train split (it has: {', '.join(found.children)})")
    return storage.join(path, "train")
