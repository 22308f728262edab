"""The tokenize engine (tokenize/engine.py) is exact: id for id the reference library's (tiktoken's encode_ordinary,
the tokenizers library) for GPT-2, cl100k_base, o200k_base and a tokenizer.json trained here, on real text and on
adversarial text from hypothesis; the same ids in any batching; the stage's guard catches an engine that differs."""

from __future__ import annotations

import hashlib
import json
import lzma
import random

import numpy as np
import pytest
from conftest import ARXIV_SAMPLE, CC_SAMPLE, DATA, SHARED_CORPORA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimpajama.errors import SlimPajamaError
from slimpajama.tokenize import engine as engines
from slimpajama.tokenize.batch import encode_documents, with_specials
from slimpajama.tokenize.encodings import get_encoding, known_tiktoken_files
from slimpajama.tokenize.engine import FastEngine, ReferenceEngine, engine_for, tiktoken_json

TOKENIZERS = ("gpt2", "cl100k_base", "o200k_base", "trained")


@pytest.fixture(scope="module")
def tiktoken_files(tmp_path_factory):
    """The real cl100k_base and o200k_base ranks (tests/data/tokenizers), checked against tiktoken's own hashes."""
    root = tmp_path_factory.mktemp("tiktoken")
    known = {name: sha for sha, name in known_tiktoken_files().items()}
    out = {}
    for name in ("cl100k_base", "o200k_base"):
        data = lzma.decompress((DATA / "tokenizers" / f"{name}.tiktoken.xz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == known[name]
        (root / f"{name}.tiktoken").write_bytes(data)
        out[name] = str(root / f"{name}.tiktoken")
    return out


def real_texts() -> list[str]:
    texts = [json.loads(line)["text"] for p in (CC_SAMPLE, ARXIV_SAMPLE, DATA / "web-pages.jsonl")
             for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts += (SHARED_CORPORA / "multilingual.txt").read_text(encoding="utf-8").split("\n\n")
    code = (SHARED_CORPORA / "code_python.txt").read_text(encoding="utf-8")
    return texts + [code[i: i + 5000] for i in range(0, len(code), 5000)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A byte-level BPE tokenizer.json trained on real text, with special tokens (the tokenizers library's form)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(real_texts(), trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>", "<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("trained") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def encoders(tiktoken_files, trained):
    """name -> (encoding, fast engine, reference engine)."""
    out = {}
    for name, spec in (("gpt2", "gpt2"), ("cl100k_base", tiktoken_files["cl100k_base"]),
                       ("o200k_base", tiktoken_files["o200k_base"]), ("trained", trained)):
        enc = get_encoding(spec)
        fast = engine_for(enc, "fast")
        assert isinstance(fast, FastEngine)
        out[name] = (enc, fast, ReferenceEngine(enc))
    return out


def assert_same_ids(fast, ref, texts):
    got, want = fast.encode_list(texts), ref.encode_list(texts)
    for text, a, b in zip(texts, got, want, strict=True):
        assert np.array_equal(a, b), f"{text[:80]!r}: {a[:20].tolist()} != {b[:20].tolist()}"


def test_a_known_tiktoken_file_is_its_encoding_and_an_unknown_one_is_refused(tiktoken_files, tmp_path):
    """Issue 44.1: a .tiktoken file was tokenized with GPT-2's pattern and an EOS after its ranks."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import ENDOFTEXT

    cl = get_encoding(tiktoken_files["cl100k_base"])
    assert (cl.name, cl.eot_token, cl.n_vocab) == ("cl100k_base", 100257, 100277)
    o2 = get_encoding(tiktoken_files["o200k_base"])
    assert (o2.name, o2.eot_token) == ("o200k_base", 199999)
    # the ids tiktoken's own cl100k_base gives: its pattern, not GPT-2's (they split "   123456" differently)
    ranks = load_tiktoken_bpe(tiktoken_files["cl100k_base"])
    own = tiktoken.Encoding("cl100k_base", pat_str=engines.CL100K_PATTERN, mergeable_ranks=ranks,
                            special_tokens={ENDOFTEXT: 100257})
    text = "Numbers   123456 and  words\n\n  end"
    assert cl.encode_ordinary(text) == own.encode_ordinary(text)
    other = tmp_path / "mine.tiktoken"
    other.write_bytes(b"YQ== 0\nYg== 1\n")
    with pytest.raises(SlimPajamaError, match="not a .tiktoken file of a known encoding.*tokenizer.json"):
        get_encoding(str(other))


@pytest.mark.parametrize("name", TOKENIZERS)
def test_engine_equals_the_reference_on_real_text(encoders, name):
    enc, fast, ref = encoders[name]
    texts = real_texts()
    assert len(texts) > 60 and sum(map(len, texts)) > 1_000_000
    assert_same_ids(fast, ref, texts)


WHITESPACE = [" ", "\t", "\r", "\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b", "\x0c"]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_every_short_whitespace_run_before_anything_and_at_the_end(encoders, name):
    """Runs of up to three whitespace characters of every kind, between a head and a tail of each class: the
    `\\s+(?!\\S)`, `\\s*[\\r\\n]` and `\\s++$` alternatives, where the engine's pattern is written differently."""
    _, fast, ref = encoders[name]
    import itertools

    runs = ["".join(c) for n in (1, 2, 3) for c in itertools.product(WHITESPACE, repeat=n)]
    texts = [h + r + t for r in runs for h in ("", "x", "x.", "7") for t in ("", "a", "1", ".", "é", "'s", "’t", "日")]
    assert_same_ids(fast, ref, texts)


PIECES = st.one_of(
    st.sampled_from(WHITESPACE).flatmap(lambda w: st.integers(1, 40).map(lambda n: w * n)),
    st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=12),
    st.sampled_from(["'s", "'T", "'Re", "'VE", "'m", "'LL", "'d", "’s", "ʼll", "'x", "don't", "DON'T", "I’M"]),
    st.text(st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No")),
            min_size=1, max_size=12),
    st.text(st.characters(categories=("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So")),
            min_size=1, max_size=6),
    st.integers(0, 10**12).map(str),
    st.sampled_from(["🦜", "🧑‍🔬", "👍🏽", "🫨", "🩷", "🇯🇵", "☃️", "e\u0301", "\u0915\u094d\u0937", "\u200d", "\ufeff"]),
    st.sampled_from(["<|endoftext|>", "<|endofprompt|>", "<s>", "</s>", "<|fim_prefix|>"]),
    st.text(st.characters(codec="ascii", categories=("Cc",)), min_size=1, max_size=4),  # NUL, controls
    st.text(min_size=1, max_size=8),  # anything else (no surrogates: text from UTF-8 holds none)
)
DOCUMENTS = st.lists(st.lists(PIECES, max_size=30).map("".join), min_size=1, max_size=8)


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(docs=DOCUMENTS, cut=st.integers(0, 8))
def test_adversarial_documents_in_any_batching(encoders, name, docs, cut):
    _, fast, ref = encoders[name]
    assert_same_ids(fast, ref, docs)
    whole = fast.encode_flat(docs)
    parts = [fast.encode_flat(docs[:cut]), fast.encode_flat(docs[cut:])]  # no state carried between calls
    assert np.array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    backwards = fast.encode_list(docs[::-1])[::-1]
    assert all(np.array_equal(a, b) for a, b in zip(backwards, fast.encode_list(docs), strict=True))


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
def test_lone_surrogates_are_replaced_as_tiktoken_replaces_them(encoders, name):
    enc, fast, _ = encoders[name]
    texts = ["a\ud800b", "\udfff", "ok"]
    got = fast.encode_list(texts)
    for t, ids in zip(texts, got, strict=True):
        assert ids.tolist() == enc.encode_ordinary(t)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_huge_single_pretokens_and_a_20mb_document(encoders, name):
    import base64

    _, fast, ref = encoders[name]
    rng = random.Random(5)
    b64 = base64.b64encode(rng.randbytes(750_000)).decode()  # 1 MB without a space: one pretoken
    hexed = rng.randbytes(500_000).hex()
    assert_same_ids(fast, ref, [b64, hexed, ""])
    if name == "gpt2":
        big = "\n\n".join(real_texts())
        big = (big * (20_000_000 // len(big) + 1))[:20_000_000]
        assert_same_ids(fast, ref, [big])


def test_a_200k_tiktoken_encoding_as_a_tokenizer_json_is_exact_through_both_libraries(tiktoken_files, tmp_path):
    """o200k_base converted to a tokenizer.json (the benchmark's 200k-id tokenizer): the tokenizers library and the
    engine give tiktoken's ids."""
    enc = get_encoding(tiktoken_files["o200k_base"])
    path = tmp_path / "o200k" / "tokenizer.json"
    path.parent.mkdir()
    path.write_text(tiktoken_json(enc._mergeable_ranks, enc._special_tokens, enc._pat_str), encoding="utf-8")
    tok = get_encoding(str(path))
    assert tok.n_vocab == enc.n_vocab and tok.eot_token == enc.eot_token
    texts = real_texts()[:40]
    want = [enc.encode_ordinary(t) for t in texts]
    assert [x.tolist() for x in ReferenceEngine(tok).encode_list(texts)] == want
    assert [x.tolist() for x in engine_for(tok, "fast").encode_list(texts)] == want


def test_flat_ids_get_their_eos_and_bos_in_place():
    ids, offsets = np.array([5, 6, 7, 8], np.uint32), np.array([0, 2, 2, 4])
    assert with_specials(ids, offsets, 9, None, np.dtype(np.uint16)).tokens.tolist() == [5, 6, 9, 9, 7, 8, 9]
    enc = with_specials(ids, offsets, 9, 1, np.dtype(np.uint32))
    assert enc.tokens.tolist() == [1, 5, 6, 9, 1, 9, 1, 7, 8, 9] and enc.lengths.tolist() == [4, 2, 4]
    assert enc.ids_of(2, 1).tolist() == [7, 8] and enc.ids_of(1, 1).tolist() == []


def test_engine_choice_and_fallback():
    enc = get_encoding("gpt2")
    assert isinstance(engine_for(enc, "auto"), FastEngine)
    assert isinstance(engine_for(enc, "reference"), ReferenceEngine)
    with pytest.raises(SlimPajamaError, match="not one of"):
        engine_for(enc, "turbo")

    class Odd:  # an encoding fastokens cannot load: auto falls back with a notice, fast refuses
        name, n_vocab, eot_token = "odd", 300, 299

        def encode_ordinary_batch(self, texts, num_threads=1):
            return [list(t.encode()) for t in texts]

    heard = []
    assert isinstance(engine_for(Odd(), "auto", notice=heard.append), ReferenceEngine)
    assert len(heard) == 1 and heard[0].startswith("notice: tokenizing odd with tiktoken")
    with pytest.raises(SlimPajamaError, match="--engine fast cannot encode odd"):
        engine_for(Odd(), "fast")
    assert encode_documents(Odd(), ["ab"]).tokens.tolist() == [97, 98, 299]


def test_the_guard_stops_a_task_whose_engine_differs_naming_the_document(tmp_path, monkeypatch):
    """A task re-encodes its longest document (and a seeded sample) with the reference: an engine that gives one
    wrong id there stops it with one line naming the document and --engine reference."""
    from slimpajama.io.discover import discover
    from slimpajama.pipelines.docstage import file_tasks
    from slimpajama.pipelines.tokens import TokenizeStage

    docs = [{"text": "short one"}, {"text": "the longest document of the file, " * 20}, {"text": "another"}]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    task = file_tasks(discover(str(tmp_path / "in")))[0]
    stage = TokenizeStage("gpt2")
    stage.prepare(str(tmp_path / "ok"))
    assert stage.engine == "fast"
    outcome = stage.run_task(task, str(tmp_path / "ok"))
    assert outcome.extra["engine"] == "fastokens" and outcome.extra["guard_checked"] >= 1

    real = FastEngine._flat

    def off_by_one(self, texts):
        ids, offsets = real(self, texts)
        ids = ids.copy()
        ids[int(offsets[1])] += 1  # the second document's first id
        return ids, offsets

    monkeypatch.setattr(FastEngine, "_flat", off_by_one)
    with pytest.raises(SlimPajamaError, match=r"document a.jsonl:2: the fastokens engine's ids differ from "
                                              r"tiktoken's .*--engine reference"):
        stage.run_task(task, str(tmp_path / "bad"))
    reference = TokenizeStage("gpt2", engine="reference")
    reference.prepare(str(tmp_path / "ref"))
    outcome = reference.run_task(task, str(tmp_path / "ref"))  # the reference: nothing to check, same bytes
    assert outcome.extra == {**outcome.extra, "engine": "tiktoken", "guard_checked": 0}
    assert (tmp_path / "ref" / "a.tokens.bin").read_bytes() == (tmp_path / "ok" / "a.tokens.bin").read_bytes()


def test_stats_show_the_engine_and_the_documents_the_guard_checked(cache, tmp_path):
    from click.testing import CliRunner

    from slimpajama.cli import main
    from slimpajama.pipelines.tokens import run_tokenize
    from slimpajama.tools.stats import token_stats

    # the sample's release is small: "auto" gives it to the reference (the engine's load would cost more)
    assert token_stats(str(cache / "tokens"))["gpt2"]["engines"] == ["tiktoken"]
    run_tokenize(str(cache / "release"), str(tmp_path / "t"), engine="fast", progress=False)
    st = token_stats(str(tmp_path / "t"))["gpt2"]
    tasks = len(list((tmp_path / "t" / "gpt2").rglob("*.tokens.bin")))
    assert st["engines"] == ["fastokens"] and st["guard_checked"] >= tasks  # at least each task's longest
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "t")], terminal_width=200)
    assert r.exit_code == 0 and f"{st['guard_checked']} documents re-encoded by the reference" in r.output
    for made in (cache / "tokens" / "gpt2").rglob("*.tokens.bin"):  # the same bytes from either engine
        assert made.read_bytes() == (tmp_path / "t" / "gpt2" / made.relative_to(cache / "tokens" / "gpt2")).read_bytes()


def test_the_pipelines_release_tokenizes_to_the_same_bytes_with_either_engine(clean_pipeline, tmp_path):
    """The pinned token cache (tests/test_pinned.py) is the reference library's bytes."""
    from slimpajama.pipelines.tokens import run_tokenize

    data = clean_pipeline[0]
    for engine in ("reference", "fast"):
        run_tokenize(str(data / "slimpajama"), str(tmp_path / engine), engine=engine, progress=False)
    made_files = sorted((data / "tokens" / "gpt2").rglob("*.tokens.bin"))
    assert len(made_files) > 3
    for made in made_files:
        rel = made.relative_to(data / "tokens" / "gpt2")
        for engine in ("reference", "fast"):
            assert (tmp_path / engine / "gpt2" / rel).read_bytes() == made.read_bytes(), (engine, rel)
