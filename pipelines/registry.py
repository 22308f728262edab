"""Every stage that writes documents or tokens, declared once: its name (the `Stage.name` its markers carry), what
its output holds (the kind `paths.what_is` recognizes), the command that makes it, the kinds it reads, and the
reasons it drops documents, each with its table label and plot colour. `paths.py` (what a folder holds and what
each command needs), `stats` (its per-source columns), `render` and `plots` read this table, so a new stage or a
new drop reason is declared here once, and a test checks that every stage accepts what the one before it writes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Drop:
    reason: str  # the ledger's key: ledger.json's `dropped.<reason>`
    label: str  # the stats table's column header
    color: str  # the documents-per-source plot's colour
    always: bool = True  # a column of the stats table even when no document was dropped for it


@dataclass(frozen=True)
class StageInfo:
    name: str  # Stage.name: what its _outputs.json and markers say
    output: str  # the kind of folder it writes (paths.what_is)
    description: str  # what that folder holds, as messages say it
    command: str  # what makes it
    accepts: tuple[str, ...]  # the kinds of input it reads
    drops: tuple[Drop, ...] = ()
    ledger: str = ""  # the name its ledger.json carries (default: its name)
    label: str = ""  # its bar in the funnel plot ("" = none)
    folder: str = ""  # where it writes under a data/ tree (the Makefile's and `pipeline`'s layout; "" = none)
    module: str = ""  # its command's module under slimpajama/cli (default: the command's name)

    @property
    def cli_module(self) -> str:
        return self.module or self.command.split()[-1]

    @property
    def ledger_name(self) -> str:
        return self.ledger or self.name


BAD_INPUT = Drop("bad_input", "bad\ninput", "tab:red")
SHORT = Drop("short", "short", "tab:orange")
DUPLICATE = Drop("duplicate", "duplicate", "tab:purple")
DUPLICATE_OF_RELEASE = Drop("duplicate_of_release", "dup. of\nrelease", "tab:pink", always=False)  # --against
CONTAMINATED = Drop("contaminated", "contam-\ninated", "tab:olive")  # decontaminate: holds evaluation data
DECONTAMINATED = Drop("decontaminated", "decontam.", "tab:brown")  # release: a train text equal to a holdout one
SAMPLED_OUT = Drop("sampled_out", "sampled\nout", "tab:gray", always=False)  # release --weights below 1

# what a document stage can read
DOCUMENT_INPUTS = ("corpus", "ingested", "normalized", "dedup", "decontaminated", "release")

INGEST = StageInfo("ingest", "ingested", "ingested documents", "slimpajama ingest", DOCUMENT_INPUTS, (BAD_INPUT,),
                   label="ingested")
NORMALIZE = StageInfo("normalize", "normalized", "normalized documents", "slimpajama normalize", DOCUMENT_INPUTS,
                      (BAD_INPUT, SHORT), label="normalized\n+ filtered",
                      folder="work/normalized")
DEDUP = StageInfo("dedup", "dedup", "deduplicated documents (a dedup output)", "slimpajama dedup",
                  ("normalized", "ingested", "decontaminated", "corpus"), (DUPLICATE, DUPLICATE_OF_RELEASE),
                  label="deduplicated", folder="work/dedup")
DECONTAMINATE = StageInfo("decontaminate", "decontaminated", "decontaminated documents", "slimpajama decontaminate",
                          DOCUMENT_INPUTS, (CONTAMINATED,), label="decontam-\ninated", folder="work/decontaminated")
RELEASE = StageInfo("release-shuffle", "release", "a SlimPajama release", "slimpajama release",
                    ("dedup", "decontaminated", "normalized", "ingested", "corpus"), (DECONTAMINATED, SAMPLED_OUT),
                    ledger="release", label="released", folder="slimpajama")
TOKENIZE = StageInfo("tokenize", "token_cache", "a token cache", "slimpajama tokenize", DOCUMENT_INPUTS,
                     label="released,\ntokenized", folder="tokens", module="tokens")  # (never shadow stdlib tokenize)
PACK = StageInfo("pack", "packed", "packed shards (split folders)", "slimpajama shards", ("token_cache", "token_root"),
                 folder="shards")
STAGES = (INGEST, NORMALIZE, DEDUP, DECONTAMINATE, RELEASE, TOKENIZE, PACK)
BY_NAME = {s.name: s for s in STAGES}
BY_OUTPUT = {s.output: s for s in STAGES}
# the stages whose output is documents, counted in a ledger.json, in the order of the data flow
LEDGER_STAGES = tuple(s for s in STAGES if s.output in DOCUMENT_INPUTS)
# every drop reason, in the order of the stages that drop them (stats' columns, the plot's stack)
DROPS = tuple({d.reason: d for s in STAGES for d in s.drops}.values())


def stage(name: str) -> StageInfo:
    return BY_NAME[name]
