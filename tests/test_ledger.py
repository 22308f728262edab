import numpy as np
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


def test_sizes_by_source_over_chunks_and_a_row_mask_equals_counting_row_by_row():
    rows = [("a", "xy"), ("b", "é"), ("a", "🙂"), ("c", ""), ("b", "long text"), ("a", "z")]
    table = pa.concat_tables([pa.table({"source": [s for s, _ in part], "text": [t for _, t in part]})
                              for part in (rows[:2], rows[2:3], rows[3:])])
    assert table["source"].num_chunks == 3
    mask = np.array([True, False, True, True, False, True])
    expected: dict[str, list[int]] = {}
    for (s, t), keep in zip(rows, mask, strict=True):
        if keep:
            acc = expected.setdefault(s, [0, 0])
            acc[0] += 1
            acc[1] += len(t.encode())
    assert sizes_by_source(table, where=mask) == {s: tuple(v) for s, v in expected.items()}
    assert sizes_by_source(table.combine_chunks().to_batches()[0], where=mask) == sizes_by_source(table, where=mask)
    assert sizes_by_source(table, where=np.zeros(6, dtype=bool)) == {}


def test_sizes_by_source_of_columns_chunked_apart():
    table = pa.table({"source": pa.chunked_array([["a", "b"], ["a"]]), "text": pa.chunked_array([["x"], ["yy", "zzz"]])})
    assert sizes_by_source(table, where=np.array([True, True, False])) == {"a": (1, 1), "b": (1, 2)}
    assert sizes_by_source(table) == {"a": (2, 4), "b": (1, 2)}
