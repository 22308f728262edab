"""The encoding engine under the tokenize stage: fastokens (a compiled BPE encoder, id for id equal to tiktoken and
the tokenizers library on every tokenizer it loads), the reference library where it cannot reproduce one.

`engine_for(enc, choice)` picks it once per process:
  * "fast": fastokens, or one `error:` line saying why it cannot encode this tokenizer;
  * "reference": tiktoken / tokenizers / sentencepiece, as before the engine existed;
  * "auto" (the default): fastokens where it loads the tokenizer and encodes PROBE exactly as the reference does,
    else the reference, with a one-line notice.
An engine never changes the bytes: it gives the reference's ids for every text (the tests show it id for id on real
and adversarial text; the stage re-checks a sample of every task, `pipelines/tokens.Guard`). The token cache's
fingerprint does not name the engine.

How fastokens gets each tokenizer. Its fast pre-tokenizers are the ones it recognizes by pattern; the others run
PCRE2 at about tiktoken's speed:
  * GPT-2's split pattern (r50k_base, p50k_base): as a tokenizer.json with GPT-2's ByteLevel pre-tokenizer,
    converted from the ranks once per machine (`tiktoken_json`, kept under $SLIMPAJAMA_CACHE/engine; ~0.4 s to
    load in each process): ~12x tiktoken per core here;
  * cl100k_base: its .tiktoken ranks with the tokenizers-library form of its pattern (the same splits: the tests
    compare every short whitespace/letter/digit/punctuation string), ~9x;
  * o200k_base and any other pattern: the .tiktoken ranks with the encoding's own pattern (o200k ~10x);
  * a tokenizer.json: as it is (`Tokenizer.from_json_str`); a SentencePiece model: the reference.
One thread per process (the stage runs a task per core): fastokens' own thread pools are sized to 1 before it loads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from slimpajama.errors import SlimPajamaError

ENGINES = ("auto", "fast", "reference")
FAST = "fastokens"

# The pattern strings of tiktoken_ext.openai_public, and the equivalent fastokens recognizes (its fast splitter).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
                  r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
CL100K_FAST = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

# Encoded by the engine and the reference when an engine is chosen; one id apart and "auto" keeps the reference.
PROBE = (
    "", " ", "a", "Hello, world! It's 2026: the year's 3.14159 best.", "I'm here; you'RE THERE, they'Ve gone.",
    "x  y\t\tz\n\n\nw \n \n ", "end with spaces   ", "end with newline\n", "tab\t", "\r\n\r\n", "a\u00a0b\u3000c\u2028d\u0085e",
    "    def f(x):\n        return x  # comment\n", "<|endoftext|> inside <|endofprompt|> text", "naïve café Ωmega",
    "日本語のテキストと中文文本。한국어 텍스트.", "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم", "e\u0301 a\u0308 \u0915\u094d\u0937",
    "emoji 🦜🧑‍🔬👍🏽 and ☃️", "1234567890 12 123 1234", "\x00\x01\x1f\x7f", "https://example.com/a?b=c&d=e#f",
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=" * 20, "0123456789abcdef" * 32,
)


def fix_surrogates(text: str) -> str:
    """tiktoken's own answer to a lone surrogate (text from Python, never from UTF-8 input): U+FFFD in its place."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class ReferenceEngine:
    """The tokenizer's own library: tiktoken's encode_ordinary, the tokenizers library, or sentencepiece."""

    def __init__(self, enc, threads: int = 1):
        self.enc, self.threads = enc, threads
        self.name = getattr(enc, "kind", "tiktoken").replace("hf", "tokenizers")

    def encode_list(self, texts: list[str]) -> list[np.ndarray]:
        enc = self.enc
        if hasattr(enc, "encode_batch_numpy"):  # a model's tokenizer.json / tokenizer.model (modelfiles.py)
            return enc.encode_batch_numpy(texts, self.threads)
        if not hasattr(enc, "encode_to_numpy"):  # a tiktoken-like encoding without the numpy variant
            return [np.asarray(x, np.uint32) for x in enc.encode_ordinary_batch(texts, num_threads=self.threads)]

        # encode() with no special tokens allowed and none disallowed is encode_ordinary: "<|endoftext|>" inside
        # a document is plain text, so a document cannot inject an EOS
        def one(t: str) -> np.ndarray:
            return enc.encode_to_numpy(t, allowed_special=set(), disallowed_special=())

        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                return list(pool.map(one, texts))
        return [one(t) for t in texts]

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return flatten(self.encode_list(texts))


class FastEngine:
    """fastokens: every text's ids in one flat uint32 buffer and n + 1 offsets, no per-document Python objects."""

    name = FAST

    def __init__(self, tok, threads: int = 1):
        self.tok, self.threads = tok, threads

    def _flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        try:
            ids, offsets = self.tok.encode_batch_flat(texts, False, True)  # no specials added; specials' text split
        except UnicodeEncodeError:
            ids, offsets = self.tok.encode_batch_flat([fix_surrogates(t) for t in texts], False, True)
        return np.frombuffer(ids, np.uint32), np.frombuffer(offsets, np.uint64).astype(np.int64)

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.threads <= 1 or len(texts) < 2:
            return self._flat(texts)
        step = -(-len(texts) // self.threads)  # fastokens releases the GIL while it encodes
        with ThreadPoolExecutor(self.threads) as pool:
            parts = list(pool.map(self._flat, [texts[i: i + step] for i in range(0, len(texts), step)]))
        return join_flat(parts)

    def encode_list(self, texts: list[str]) -> list[np.ndarray]:
        ids, offsets = self.encode_flat(texts)
        return [ids[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def flatten(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    ids = np.concatenate(arrays).astype(np.uint32, copy=False) if arrays else np.zeros(0, np.uint32)
    return ids, offsets


def join_flat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([p[0] for p in parts])
    base = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    offsets = np.concatenate([parts[0][1][:1]] + [p[1][1:] + b for p, b in zip(parts, base, strict=True)])
    return ids, offsets


# ----------------------------------------------------------------------------------------- loading fastokens


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, as a tokenizer.json's ByteLevel vocabulary spells bytes."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _merge_of(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The pair whose merge made `token`: BPE over its bytes with the merges ranked below it stops at two parts."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best, at = rank, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best:
                best, at = r, i
        if at < 0:
            break
        parts[at: at + 2] = [parts[at] + parts[at + 1]]
    if len(parts) != 2:
        raise SlimPajamaError(f"the BPE ranks cannot make token {token!r} from two lower-ranked tokens")
    return parts[0], parts[1]


def tiktoken_json(ranks: dict[bytes, int], special_tokens: dict[str, int], pattern: str | None = None) -> str:
    """A tokenizer.json equal to a tiktoken encoding: the same vocabulary, the merges recovered from the ranks
    (tiktoken merges by rank, so the pair that makes a token is the one BPE reaches below its rank), and GPT-2's
    ByteLevel pre-tokenizer (`pattern` None: GPT-2's pattern; tiktoken's `\\s++$` splits as `\\s+(?!\\S)` does),
    else a Split on `pattern` before it (as Hugging Face's conversions of cl100k / o200k)."""
    spell = _bytes_to_unicode()

    def s(b: bytes) -> str:
        return "".join(spell[x] for x in b)

    # added tokens take the ids after the vocabulary in order, whatever id the file gives them: the unused ids
    # below the specials (o200k's 199,998 and 200,000-200,017) become reserved tokens so every id stays put
    added = {i: c for c, i in special_tokens.items()}
    added.update({i: f"<|reserved_{i}|>" for i in range(len(ranks), max(added, default=0)) if i not in added})
    merges = [[s(a), s(b)] for t, r in sorted(ranks.items(), key=lambda kv: kv[1]) if len(t) > 1
              for a, b in (_merge_of(ranks, t, r),)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": pattern is None}
    pre = byte_level if pattern is None else {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}, byte_level]}
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "normalizer": None, "post_processor": None,
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, c in sorted(added.items())],
        "pre_tokenizer": pre, "decoder": {**byte_level, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": {s(t): r for t, r in ranks.items()}, "merges": merges}})


def _converted(ranks: dict[bytes, int], specials: dict[str, int]) -> str:
    """tiktoken_json, made once per machine: kept under the cache folder by a digest of the ranks and specials
    (converting takes about a second, in every worker process otherwise)."""
    from .encodings import cache_dir

    h = hashlib.sha256(json.dumps(sorted(specials.items())).encode())
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        h.update(rank.to_bytes(4, "little") + len(token).to_bytes(2, "little") + token)
    path = cache_dir().parent / "engine" / f"{h.hexdigest()[:32]}.tokenizer.json"
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    text = tiktoken_json(ranks, specials)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only cache folder: convert in every process
        pass
    return text


def _single_thread() -> None:
    # one thread per process: the stage already runs a task per core (set before fastokens makes its pools)
    for var in ("RAYON_NUM_THREADS", "FASTOKENS_BPE_THREADS"):
        os.environ.setdefault(var, "1")


def _fast_tokenizer(enc):
    """A fastokens Tokenizer for `enc` (a tiktoken Encoding or a ModelTokenizer); raises why it cannot."""
    _single_thread()
    import fastokens

    if getattr(enc, "kind", None) == "sentencepiece":
        raise SlimPajamaError("fastokens reads no SentencePiece model")
    if hasattr(enc, "kind"):  # a tokenizer.json
        return fastokens.Tokenizer.from_json_str(enc.data.decode("utf-8"))
    ranks, specials, pattern = enc._mergeable_ranks, enc._special_tokens, enc._pat_str  # tiktoken's own fields
    if pattern == GPT2_PATTERN:
        return fastokens.Tokenizer.from_json_str(_converted(ranks, specials))
    with tempfile.TemporaryDirectory() as d:  # fastokens reads ranks from a .tiktoken file
        path = os.path.join(d, "ranks.tiktoken")
        with open(path, "wb") as f:
            f.writelines(base64.b64encode(t) + b" " + str(r).encode() + b"\n"
                         for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
        return fastokens.Tokenizer.from_tiktoken(path, pattern=CL100K_FAST if pattern == CL100K_PATTERN else pattern,
                                                 special_tokens=dict(specials))


def _probe_differs(fast: FastEngine, ref: ReferenceEngine) -> str | None:
    for text, a, b in zip(PROBE, fast.encode_list(list(PROBE)), ref.encode_list(list(PROBE)), strict=True):
        if not np.array_equal(a, b):
            return f"its ids differ from the reference's on {text[:40]!r}"
    return None


_LOADED: dict = {}  # id(enc) -> (enc, FastEngine's tokenizer or why there is none): loaded once per process


def _fast_or_why(enc) -> tuple[object | None, str | None]:
    if id(enc) not in _LOADED:
        tok, why = None, None
        try:
            tok = _fast_tokenizer(enc)
            why = _probe_differs(FastEngine(tok), ReferenceEngine(enc))
        except ImportError:
            why = "fastokens is not installed"
        except Exception as e:  # noqa: BLE001 - any load failure means: use the reference
            why = f"fastokens cannot load it ({(str(e).splitlines() or [type(e).__name__])[0]})"
        _LOADED[id(enc)] = (enc, None if why else tok, why)  # enc kept alive so its id is not reused
    return _LOADED[id(enc)][1:]


def engine_for(enc, choice: str = "auto", threads: int = 1, notice=None):
    """The engine that encodes with `enc` (see the module docstring). `notice(line)` hears why "auto" fell back."""
    if choice not in ENGINES:
        raise SlimPajamaError(f"--engine {choice!r} is not one of {', '.join(ENGINES)}")
    ref = ReferenceEngine(enc, threads)
    if choice == "reference":
        return ref
    tok, why = _fast_or_why(enc)
    if tok is not None:
        return FastEngine(tok, threads)
    name = getattr(enc, "name", "?")
    if choice == "fast":
        raise SlimPajamaError(f"--engine fast cannot encode {name}: {why}; use --engine auto or reference")
    if notice is not None:
        notice(f"notice: tokenizing {name} with {ref.name} (the reference), not {FAST}: {why}")
    return ref
