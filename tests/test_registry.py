"""Stages declared once (pipelines/registry.py): every stage accepts what the stage before it writes, every output
kind is described where messages name it, and every drop reason has a stats column, a table label and a plot
colour, so a new stage or reason cannot be silently left out."""

from __future__ import annotations

from slimpajama.pipelines import registry
from slimpajama.pipelines.paths import _STAGE_KINDS, DESCRIPTIONS, DOCUMENTS
from slimpajama.tools.stats import pipeline_stats

FLOW = ("ingest", "normalize", "dedup", "decontaminate", "release-shuffle", "tokenize", "pack")


def test_each_stage_accepts_the_output_of_the_one_before_it():
    assert [s.name for s in registry.STAGES] == list(FLOW)
    for before, after in zip(FLOW[1:-1], FLOW[2:], strict=True):
        assert registry.stage(before).output in registry.stage(after).accepts, (before, after)
    assert registry.stage("ingest").output in registry.stage("normalize").accepts
    assert registry.stage("dedup").output in registry.stage("release-shuffle").accepts  # decontaminate is optional
    assert {"ingested", "normalized", "dedup", "decontaminated", "release"} <= set(DOCUMENTS)
    # the stages that write documents have a ledger, a funnel label and a folder in a data/ tree
    assert all(s.label and s.ledger_name for s in registry.LEDGER_STAGES)
    assert len({s.folder for s in registry.STAGES if s.folder}) == len([s for s in registry.STAGES if s.folder])


def test_every_output_kind_is_recognized_and_described():
    for s in registry.STAGES:
        assert _STAGE_KINDS[s.name] == s.output
        assert DESCRIPTIONS[s.output] == (s.description, s.command)
        assert all(kind in DESCRIPTIONS for kind in s.accepts)


def test_every_drop_reason_has_a_stats_column_a_label_and_a_colour():
    reasons = [d.reason for d in registry.DROPS]
    assert len(set(reasons)) == len(reasons) >= 6
    ledger = {"stage": "normalize", "sources": {"S": {"docs_in": 12, "bytes_in": 1200, "docs_out": 0, "dropped": {
        r: {"docs": i + 1, "bytes": 10} for i, r in enumerate(reasons)}}}}
    row = pipeline_stats({"normalize": ledger})["sources"]["S"]
    assert [row[r] for r in reasons] == list(range(1, len(reasons) + 1))
    assert all(d.label and d.color.startswith("tab:") for d in registry.DROPS)
    assert len({d.color for d in registry.DROPS}) == len(reasons)
