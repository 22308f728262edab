"""Run in the peers' virtualenv (`make peers`): read what the project wrote with another library's own reader and
save what it returned, for tests/test_peers.py to compare with the project's own files.

    read.py mds DIR OUT.npz              MosaicML streaming.StreamingDataset: every sample's tokens
    read.py litdata DIR BLOCK OUT.npz    litdata.StreamingDataset with TokensLoader(BLOCK): every block
    read.py hf DIR OUT.json              datasets.load_dataset(DIR): each split's rows, columns, first row
"""

import json
import sys

import numpy as np


def mds(folder, out):
    from streaming import StreamingDataset

    ds = StreamingDataset(local=folder, shuffle=False, batch_size=1)
    docs = [ds[i]["tokens"] for i in range(len(ds))]
    np.savez(out, tokens=np.concatenate(docs), lengths=np.array([len(d) for d in docs]),
             dtype=np.array(str(docs[0].dtype)))


def litdata(folder, block, out):
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    ds = StreamingDataset(folder, item_loader=TokensLoader(block_size=int(block)), shuffle=False)
    blocks = [ds[i].numpy() for i in range(len(ds))]
    np.savez(out, blocks=np.stack(blocks), dtype=np.array(str(blocks[0].dtype)))


def hf(folder, out):
    from datasets import load_dataset

    splits = load_dataset(folder)
    report = {}
    for name, ds in splits.items():
        first = ds[0] if len(ds) else None
        report[name] = {"rows": len(ds), "columns": ds.column_names,
                        "first": {k: (v if not isinstance(v, list) else [int(x) for x in v]) for k, v in first.items()}
                        if first else None}
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    {"mds": mds, "litdata": litdata, "hf": hf}[sys.argv[1]](*sys.argv[2:])
