"""The `sh` and `python` blocks of the README and the docs/ pages it links (DOC_PAGES, in that order), run in order
as a user would, on the data/ tree of the sample corpus
(its token cache and release), so they cannot rot. A block that imports another library's reader (datasets,
litdata, streaming) runs in the peers' virtualenv (see test_peers.py), the others in the project's. The quick
start (a `bash` block: make dedup, make test) is what CI itself runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_peers import PEERS, ROOT, peer_env

BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)
DOC_PAGES = ("README.md", "docs/commands.md", "docs/tokenizers.md", "docs/shards.md", "docs/trainer.md",
             "docs/dedup.md", "docs/decontaminate.md", "docs/cluster.md", "docs/reliability.md", "docs/benchmarks.md")
PEER_IMPORT = re.compile(r"^\s*(from|import) (datasets|litdata|streaming)\b", re.M)


@pytest.fixture(scope="module")
def workdir(clean_pipeline, tmp_path_factory):
    data, _, _ = clean_pipeline
    d = tmp_path_factory.mktemp("readme")
    for sub in ("tokens", "slimpajama"):
        shutil.copytree(data / sub, d / "data" / sub)
    return d


def test_the_readme_sh_and_python_blocks_run(workdir):
    blocks = [b for page in DOC_PAGES for b in BLOCK.findall((ROOT / page).read_text())]
    kinds = [k for k, _ in blocks]
    assert kinds.count("sh") >= 2 and kinds.count("python") >= 5, kinds
    project = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for n, (kind, code) in enumerate(blocks, 1):
        if kind == "sh":
            cmd, env = ["bash", "-euo", "pipefail", "-c", code], project
        elif PEER_IMPORT.search(code):
            cmd, env = [str(PEERS / "bin" / "python"), "-c", code], peer_env(workdir)
        else:
            cmd, env = [sys.executable, "-c", code], project
        r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"documentation block {n} ({kind}):\n{code}\n{r.stderr[-3000:]}"


def test_every_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    assert set(DOC_PAGES[1:]) | {"docs/DESIGN.md"} == set(pages)
    assert all(f"({page})" in readme for page in pages)
