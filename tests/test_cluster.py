"""A real multi-node Ray cluster on loopback: a head and a second node (`ray start`, separate temp dirs and ports,
token authentication), `make dedup` and `make shards` with RAY_ADDRESS, the same bytes as local mode, tasks on
both nodes; then both nodes are stopped."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import REPO
from pipeline_helpers import free_port, product

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
MAKE_VARS = ["HOLDOUT=0.05", "SEQ=64", "RANGE=0:0.75"]


def _start(args: list[str], env: dict, log) -> subprocess.Popen:
    # --block keeps the node's processes children of this one: stopping its process group stops the node without
    # `ray stop`, which would also stop the test session's own Ray
    return subprocess.Popen([RAY, "start", *args, "--num-cpus", "1", "--object-store-memory", str(150 << 20),
                             "--disable-usage-stats", "--block"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="sp-ray-", dir="/tmp")  # short: Ray's socket paths live under the temp dir
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0"}
    address = f"127.0.0.1:{port}"
    log = open(os.path.join(tmp, "nodes.log"), "wb")
    nodes = [_start(["--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard",
                     "false", "--temp-dir", os.path.join(tmp, "head")], env, log)]
    try:
        _wait_for_nodes(address, env, 1)
        nodes.append(_start(["--address", address, "--node-ip-address", "127.0.0.1", "--temp-dir",
                             os.path.join(tmp, "node2")], env, log))
        _wait_for_nodes(address, env, 2)
        yield address, env
    finally:
        for p in reversed(nodes):
            _stop(p)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    assert all(p.poll() is not None for p in nodes)


def _wait_for_nodes(address: str, env: dict, n: int) -> None:
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(x['Alive'] for x in ray.nodes()))")
    deadline = time.time() + 120
    while time.time() < deadline:
        r = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    pytest.fail(f"the Ray cluster did not reach {n} nodes: {r.stderr[-2000:]}")


def _make(target: str, raw, data, env: dict) -> None:
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), target, f"RAW={raw}", f"SAMPLE={raw}",
                        f"DATA={data}", *MAKE_VARS], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


def _nodes_used(data) -> set[str]:
    nodes = set()
    for dirpath, _, files in os.walk(data):
        if f"{os.sep}_state" in dirpath:
            for f in files:
                if f.endswith(".json"):
                    with open(os.path.join(dirpath, f)) as fh:
                        nodes.add(json.load(fh).get("node"))
    return nodes


@pytest.mark.slow  # 61 s: two Ray nodes started on one machine
def test_make_dedup_and_shards_on_a_two_node_cluster_match_local_mode(cluster, sample_corpus, tmp_path):
    address, env = cluster
    raw, _ = sample_corpus
    local_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    _make("shards", raw, tmp_path / "local", local_env)
    _make("dedup", raw, tmp_path / "cluster", {**env, "RAY_ADDRESS": address})
    _make("shards", raw, tmp_path / "cluster", {**env, "RAY_ADDRESS": address})
    assert product(tmp_path / "cluster") == product(tmp_path / "local")
    assert len(_nodes_used(tmp_path / "cluster") - {None}) == 2  # both nodes ran shard tasks
