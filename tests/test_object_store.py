"""Every stage reads and writes s3:// URIs, against a real S3-compatible server (moto's server mode) that the test
starts on loopback: the same bytes as a local run, resumable, and shards readable straight from the bucket."""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow.fs as pafs
import pytest
from pipeline_helpers import SEQ, free_port, ledgers_balance, pipeline, product

from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.discover import discover
from slimpajama.io.writers import atomic_path, write_bytes_atomic
from slimpajama.packers import ShardReader

BUCKET = "slimpajama-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="testing",
                               secret_key="testing", region="us-east-1", allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield fs
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def s3_run(s3, pipeline_corpus, ray_session):
    raw, _ = pipeline_corpus
    pafs.copy_files(str(raw), f"{BUCKET}/raw", destination_filesystem=s3)
    data = f"s3://{BUCKET}/data"
    reports = pipeline(f"s3://{BUCKET}/raw", data)
    return data, reports


def test_discover_lists_the_bucket_like_a_directory(s3_run, pipeline_corpus):
    raw, _ = pipeline_corpus
    local = [(f.rel, f.size) for f in discover(str(raw))]
    assert [(f.rel, f.size) for f in discover(f"s3://{BUCKET}/raw")] == local
    assert [(f.rel, f.size) for f in discover(f"s3://{BUCKET}/raw/**/*.jsonl*")] == \
        [x for x in local if ".jsonl" in x[0]]
    with pytest.raises(SlimPajamaError, match="input not found"):
        discover(f"s3://{BUCKET}/nothing-here")


def test_whole_pipeline_on_s3_gives_the_local_bytes(s3_run, clean_pipeline):
    data, _ = s3_run
    local_data, want, _ = clean_pipeline
    ledgers_balance(data)
    got = product(data)
    assert got == want
    assert not any(storage.is_remote(f) for f in os.listdir(local_data))  # sanity: the reference is local


def test_rerun_on_s3_resumes_every_shard(s3_run, pipeline_corpus):
    data, _ = s3_run
    reports = pipeline(f"s3://{BUCKET}/raw", data)
    assert all(r.skipped == r.shards for r in reports), [(r.stage, r.skipped, r.shards) for r in reports]


def test_shard_reader_reads_from_the_bucket(s3_run, clean_pipeline):
    data, _ = s3_run
    local_data, _, _ = clean_pipeline
    remote = ShardReader(f"{data}/shards/seq{SEQ}-0-0.75/train")
    local = ShardReader(str(local_data / "shards" / f"seq{SEQ}-0-0.75" / "train"))
    assert len(remote) == len(local) > 0
    for i in (0, len(local) // 2, len(local) - 1):
        np.testing.assert_array_equal(remote[i], local[i])


def test_a_failed_upload_leaves_no_object(s3, tmp_path):
    uri = f"s3://{BUCKET}/atomic/x.json"
    with pytest.raises(RuntimeError):
        with atomic_path(uri) as tmp:
            open(tmp, "wb").write(b"partial")
            raise RuntimeError("killed while writing")
    assert storage.file_size(uri) is None
    write_bytes_atomic(uri, b"whole")
    assert storage.read_bytes(uri) == b"whole"
