import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_CORPORA = REPO / "slimpajama" / "data"  # copies of ../shared/corpora shipped with the package
ARXIV_SAMPLE = SHARED_CORPORA / "redpajama-arxiv-sample.jsonl"
CC_SAMPLE = SHARED_CORPORA / "cc-en-head-sample.jsonl"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, like this machine)."""
    import ray

    from slimpajama.pipelines import init_ray

    init_ray(workers=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory):
    """A small generated corpus with ground truth, shared read-only by the tests."""
    from slimpajama.tools.sample_corpus import generate_corpus

    out = tmp_path_factory.mktemp("sample") / "raw"
    truth = generate_corpus(str(out), seed=7, docs=600)
    return out, truth


@pytest.fixture(scope="session")
def pipeline_corpus(sample_corpus, tmp_path_factory):
    """The sample corpus in RedPajama-Data-1T's layout (book/book.jsonl, wikipedia/wiki.jsonl, ... plain files that
    the pipeline tests split into parts, red_pajama_subset rows), shared read-only."""
    from slimpajama.tools.sample_corpus import to_redpajama_1t

    raw, _ = sample_corpus
    out = tmp_path_factory.mktemp("rp1t") / "raw"
    return out, to_redpajama_1t(str(raw), str(out))


@pytest.fixture(scope="session")
def clean_pipeline(pipeline_corpus, tmp_path_factory, ray_session):
    """The whole pipeline run once, uninterrupted, on the RedPajama-1T-shaped sample corpus (big files split into
    parts): (data dir, product, tasks per stage)."""
    from pipeline_helpers import ledgers_balance, pipeline, product, task_counts

    raw, _ = pipeline_corpus
    data = tmp_path_factory.mktemp("clean")
    pipeline(raw, data)
    ledgers_balance(data)
    return data, product(data), task_counts(data)
