import pyarrow as pa
import pytest

from slimpajama.core.ledger import Ledger, LedgerImbalance, sizes_by_source


def test_sizes_by_source_counts_utf8_bytes():
    b = pa.table({"source": ["a", "b", "a"], "text": ["xy", "é", "🙂"]})
    assert sizes_by_source(b) == {"a": (2, 2 + 4), "b": (1, 2)}


def test_merge_balance_and_round_trip():
    one, two = Ledger("s"), Ledger("s")
    one.count_in("a", 3, 30)
    one.count_out("a", 2, 20, written=18)
    one.count_dropped("a", "short", 1, 10)
    two.count_in("a", 1, 5)
    two.count_dropped("a", "bad_input", 1, 5)
    two.count_in("b", 1, 7)
    two.count_out("b", 1, 7)
    merged = Ledger.merged("s", [one, two])
    merged.check_balanced()
    d = merged.to_dict()
    assert d["totals"]["docs_in"] == 5 and d["totals"]["docs_out"] == 3
    assert d["sources"]["a"]["dropped"] == {"bad_input": {"docs": 1, "bytes": 5}, "short": {"docs": 1, "bytes": 10}}
    assert d["sources"]["a"]["bytes_written"] == 18
    assert Ledger.from_dict(d).to_dict() == d
    merged.count_in("b", 1, 1)
    with pytest.raises(LedgerImbalance, match="source 'b'"):
        merged.check_balanced()
