import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
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


@pytest.fixture(scope="session")
def cache(sample_corpus, tmp_path_factory, ray_session):
    """The sample corpus normalized, released (holdout 0.05) and tokenized: `<root>/tokens/gpt2`, read-only."""
    from slimpajama.core.release import ReleaseConfig
    from slimpajama.io.discover import discover
    from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
    from slimpajama.pipelines.release import run_release
    from slimpajama.pipelines.tokens import run_tokenize

    raw, _ = sample_corpus
    root = tmp_path_factory.mktemp("tok")
    run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(root / "n"), progress=False)
    run_release(str(root / "n"), str(root / "release"), ReleaseConfig(holdout=0.05, docs_per_file=100),
                progress=False)
    run_tokenize(str(root / "release"), str(root / "tokens"), progress=False)
    return root
