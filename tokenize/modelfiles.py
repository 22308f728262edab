"""Tokenizers as models ship them: a Hugging Face `tokenizer.json` (the `tokenizers` library: Qwen, Mistral, OLMo,
SmolLM, Llama 3, ...) or a SentencePiece `tokenizer.model` (the `sentencepiece` library, `slimpajama[spm]`: Llama 2,
Gemma). Always a local file (or a folder holding one), never a hub download.

A `ModelTokenizer` wears tiktoken's face where the pipeline uses it (`name`, `n_vocab`, `eot_token`, `decode`)
plus `encode_batch_numpy`. Documents are encoded as ordinary text: no special token is added per document (the
pipeline appends the EOS, and the BOS with `--bos`), and a special token's text inside a document is encoded as
text, so a document cannot inject an EOS (as tiktoken's `encode_ordinary`). The EOS is `--eos TOKEN`, else the
`eos_token` of a `tokenizer_config.json` / `special_tokens_map.json` beside the file, else a known name among its
tokens (`<|endoftext|>`, `</s>`, ...); SentencePiece's own `eos_id`. No EOS: one error naming `--eos`.

Workers load the tokenizer from the bytes of the token cache's copy (`<cache>/_tokenizer/<file>`), so a cluster
needs no access to the user's path, and the cache's identity is the file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from slimpajama.errors import SlimPajamaError

HF_FILE, SPM_FILE = "tokenizer.json", "tokenizer.model"
EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", "<|end|>")
BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|bos|>")
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # where HF models name their EOS / BOS
SPM_HINT = ("pip install sentencepiece (or slimpajama[spm]), or convert it to a tokenizer.json with transformers: "
            "AutoTokenizer.from_pretrained(FOLDER).save_pretrained(OUT)")


def locate(spec: str) -> tuple[str, str] | None:
    """(file, kind) when `spec` names a tokenizer file or a folder holding one; None when it names no path (a
    tiktoken encoding or a .tiktoken file). kind: "hf" or "sentencepiece"."""
    if spec.endswith(".tiktoken"):
        return None
    if os.path.isdir(spec):
        for name, kind in ((HF_FILE, "hf"), (SPM_FILE, "sentencepiece")):
            if os.path.isfile(os.path.join(spec, name)):
                return os.path.join(spec, name), kind
        raise SlimPajamaError(f"{spec} is a folder without a {HF_FILE} or {SPM_FILE}: give the tokenizer file "
                              "or the model folder that holds it")
    if os.path.isfile(spec):
        with open(spec, "rb") as f:
            head = f.read(64).lstrip()
        return spec, ("hf" if head.startswith(b"{") else "sentencepiece")
    if spec.endswith((".json", ".model")) or os.sep in spec or "/" in spec:
        raise SlimPajamaError(f"tokenizer not found: {spec} (give a {HF_FILE}, a {SPM_FILE} or a folder holding "
                              "one; tokenizers are read from local files, never downloaded)")
    return None


def cache_name(file: str) -> str:
    """The token cache's folder name: a model folder's name for its tokenizer.json / tokenizer.model, else the
    file's own name without its extension (the identity is the file's SHA-256, in the cache's fingerprint)."""
    base = os.path.basename(file)
    if base in (HF_FILE, SPM_FILE):
        parent = os.path.basename(os.path.dirname(os.path.abspath(file)))
        return parent or os.path.splitext(base)[0]
    return os.path.splitext(base)[0]


def _special_names(file: str) -> dict:
    """eos_token / bos_token as a tokenizer_config.json (or special_tokens_map.json) beside the file names them."""
    found: dict = {}
    for name in CONFIG_FILES:
        path = os.path.join(os.path.dirname(os.path.abspath(file)), name)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            continue
        for key in ("eos_token", "bos_token"):
            value = config.get(key) if isinstance(config, dict) else None
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and key not in found:
                found[key] = value
    return found


@dataclass
class ModelTokenizer:
    kind: str  # "hf" | "sentencepiece"
    name: str  # the token cache's folder name
    filename: str  # the file's name, as the cache and the shards keep their copy
    data: bytes = field(repr=False)
    eos: str | None = None  # the EOS token's text (None: the tokenizer's own); resolved into eot_token
    bos: str | None = None  # the BOS token's text; None: no BOS is prepended
    sha256: str = ""
    n_vocab: int = 0
    eot_token: int = -1
    bos_token: int | None = None
    _tok: object = field(default=None, repr=False)

    def __post_init__(self):
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        if self.kind == "hf":
            self._load_hf()
        else:
            self._load_spm()

    def _load_hf(self):
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_str(self.data.decode("utf-8"))
        except Exception as e:  # noqa: BLE001 - the library's message, on one line
            raise SlimPajamaError(f"{self.filename} is not a tokenizer.json the tokenizers library reads: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        tok.encode_special_tokens = True  # "<|endoftext|>" in a document is text, never the EOS
        vocab = tok.get_vocab(with_added_tokens=True)
        self.n_vocab = max(vocab.values(), default=-1) + 1
        self.eot_token = self._token_id(vocab, self.eos, EOS_NAMES, "EOS", "--eos TOKEN")
        if self.bos is not None:
            self.bos_token = self._token_id(vocab, self.bos or None, BOS_NAMES, "BOS", "--bos-token TOKEN")
        self._tok = tok
        self._name_specials(tok.id_to_token)

    def _token_id(self, vocab: dict, named: str | None, known: tuple[str, ...], what: str, flag: str) -> int:
        if named is not None:
            if named not in vocab:
                raise SlimPajamaError(f"{self.filename} has no token {named!r} (the {what} asked for)")
            return vocab[named]
        for candidate in known:
            if candidate in vocab:
                return vocab[candidate]
        raise SlimPajamaError(f"{self.filename} has no {what} token slimpajama recognizes (none of "
                              f"{', '.join(known)}): name one with {flag}")

    def _load_spm(self):
        try:
            import sentencepiece as spm
        except ImportError:
            raise SlimPajamaError(f"{self.filename} is a SentencePiece model, which the tokenizers library cannot "
                                  f"read: {SPM_HINT}") from None
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(self.data)
        except Exception as e:  # noqa: BLE001
            raise SlimPajamaError(f"{self.filename} is neither a tokenizer.json nor a SentencePiece model: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.n_vocab = sp.get_piece_size()
        pieces = {sp.id_to_piece(i): i for i in range(self.n_vocab)} if (self.eos or self.bos) else {}
        if self.eos:
            self.eot_token = self._token_id(pieces, self.eos, EOS_NAMES, "EOS", "--eos TOKEN")
        elif sp.eos_id() >= 0:
            self.eot_token = sp.eos_id()
        else:
            raise SlimPajamaError(f"{self.filename} has no EOS (its eos_id is -1): name one with --eos TOKEN")
        if self.bos:
            self.bos_token = self._token_id(pieces, self.bos, BOS_NAMES, "BOS", "--bos-token TOKEN")
        elif self.bos is not None:
            if sp.bos_id() < 0:
                raise SlimPajamaError(f"{self.filename} has no BOS (its bos_id is -1): name one with --bos-token")
            self.bos_token = sp.bos_id()
        self._tok = sp
        self._name_specials(sp.id_to_piece)

    def _name_specials(self, text_of) -> None:
        # the resolved tokens by their text, so a worker (and a later stage) loading the same bytes with them
        # gets the same ids whatever the folder held beside the file
        self.eos = text_of(self.eot_token)
        self.bos = None if self.bos_token is None else text_of(self.bos_token)

    def encode_batch_numpy(self, texts: list[str], threads: int = 1) -> list[np.ndarray]:
        """Each text's ids (no special tokens added), as the library's batch encoding gives them."""
        if self.kind == "sentencepiece":
            return [np.asarray(ids, dtype=np.uint32) for ids in self._tok.encode(texts, num_threads=threads)]
        if threads <= 1 or len(texts) < 2:
            return self._encode_hf(texts)
        # the tokenizers library's own pool would take every core of the machine: `threads` chunks instead,
        # each encoded serially (the library releases the GIL while it encodes)
        step = -(-len(texts) // threads)
        with ThreadPoolExecutor(threads) as pool:
            parts = pool.map(self._encode_hf, [texts[i: i + step] for i in range(0, len(texts), step)])
            return [ids for part in parts for ids in part]

    def _encode_hf(self, texts: list[str]) -> list[np.ndarray]:
        # encode_batch_fast: the ids without character offsets, which the cache does not keep
        return [np.asarray(e.ids, dtype=np.uint32)
                for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        return self._tok.decode(ids, skip_special_tokens=False) if self.kind == "hf" else self._tok.decode(ids)

    def identity(self) -> dict:
        """What a token cache made with this tokenizer depends on (its fingerprint's tokenizer fields)."""
        return {"tokenizer": self.kind, "file": self.filename, "sha256": self.sha256, "eos": self.eot_token,
                "eos_token": self.eos, "bos": self.bos_token, "bos_token": self.bos, "vocab_size": self.n_vocab}


_LOADED: dict = {}  # by (SHA-256, name, file name, EOS text, BOS text): each loaded once per process


def load(file: str, kind: str, eos: str | None = None, bos: str | None = None) -> ModelTokenizer:
    """The tokenizer in `file` (see `locate`). `bos`: None for no BOS, "" for the tokenizer's own, else a token."""
    # TOKENIZERS_PARALLELISM: the library's pool would take every core in every task; the threads are ours
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    with open(file, "rb") as f:
        data = f.read()
    named = _special_names(file) if kind == "hf" else {}
    return _remember(ModelTokenizer(kind, cache_name(file), os.path.basename(file), data,
                                    eos=eos or named.get("eos_token"),
                                    bos=None if bos is None else (bos or named.get("bos_token") or "")))


def from_bytes(kind: str, name: str, filename: str, data: bytes, eos: str | None, bos: str | None) -> ModelTokenizer:
    """A worker's tokenizer, from the cache's copy (loaded once per process)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    key = (hashlib.sha256(data).hexdigest(), name, filename, eos, bos)
    if key not in _LOADED:
        _remember(ModelTokenizer(kind, name, filename, data, eos=eos, bos=bos), key)
    return _LOADED[key]


def _remember(tok: ModelTokenizer, key: tuple | None = None) -> ModelTokenizer:
    # also under its resolved EOS / BOS texts: what a worker (or the driver's fingerprint) asks for by them
    _LOADED[(tok.sha256, tok.name, tok.filename, tok.eos, tok.bos)] = tok
    if key is not None:
        _LOADED[key] = tok
    return tok
