"""Which tokenizer a spec names (`get_encoding`, the one place that recognizes one): tiktoken encodings, obtained
and verified offline, or a model's tokenizer.json / tokenizer.model (modelfiles.py). Installed as
`slimpajama.tokenize.encodings`.

`tokenize/` is a namespace package on purpose: a regular package named `tokenize` at the repository root would
shadow the standard library's `tokenize` module (see docs/DESIGN.md, "Layout").

GPT-2 BPE (`gpt2` = tiktoken's `r50k_base`, BTLM's tokenizer) is looked up, in order:
  1. our cache (`$SLIMPAJAMA_CACHE`, default ~/.cache/slimpajama), verified against tiktoken's expected SHA-256;
  2. the sdist of PyPI `openai-whisper`, which ships the same file as whisper/assets/gpt2.tiktoken (fetched with
     `pip download --no-deps --no-binary :all:`, so it works where only the package index is reachable);
  3. tiktoken's own download (a machine with internet).
The file is cached after the first success. Any other tiktoken encoding is used by name (tiktoken's cache or
download) or as a path to a `.tiktoken` file. When nothing works: a SlimPajamaError saying what was tried, never
a hang (network attempts have timeouts).
"""

from __future__ import annotations

import glob
import hashlib
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

from slimpajama.core import defaults
from slimpajama.errors import SlimPajamaError

from . import modelfiles

GPT2_ALIASES = ("gpt2", "r50k_base")
GPT2_EOS_ID = 50256
R50K_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
R50K_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"  # tiktoken's expected_hash
WHISPER_SDIST = "openai-whisper==20250625"
NETWORK_TIMEOUT_S = 10


def cache_dir() -> Path:
    from slimpajama.io.storage import cache_dir as root

    return Path(root()) / "tiktoken"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(data: bytes) -> Path:
    path = cache_dir() / "r50k_base.tiktoken"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _from_whisper_sdist() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                            "--disable-pip-version-check", "-d", d, WHISPER_SDIST],
                           capture_output=True, text=True, timeout=300)
        sdists = glob.glob(os.path.join(d, "*.tar.gz"))
        if r.returncode != 0 or not sdists:
            raise OSError(f"pip download {WHISPER_SDIST} failed: {r.stderr.strip()[-300:]}")
        with tarfile.open(sdists[0]) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken")), None)
            if member is None:
                raise OSError(f"{os.path.basename(sdists[0])} holds no whisper/assets/gpt2.tiktoken")
            return tar.extractfile(member).read()


def _reachable(url: str) -> bool:
    host = url.split("/")[2]
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT_S):
            return True
    except OSError:
        return False


def _from_tiktoken_download() -> bytes:
    if not _reachable(R50K_URL):
        raise OSError(f"{R50K_URL.split('/')[2]} is not reachable")
    import requests

    resp = requests.get(R50K_URL, timeout=NETWORK_TIMEOUT_S * 6)
    resp.raise_for_status()
    return resp.content


def gpt2_bpe_file(fetch: bool = True) -> Path:
    """The verified GPT-2 BPE file, fetched into the cache when missing (see the module docstring)."""
    cached = cache_dir() / "r50k_base.tiktoken"
    if cached.exists() and _sha256(cached.read_bytes()) == R50K_SHA256:
        return cached
    if not fetch:
        raise SlimPajamaError(f"GPT-2 encoding not cached at {cached}: run `slimpajama encodings fetch`")
    tried = []
    for name, source in (("PyPI sdist " + WHISPER_SDIST, _from_whisper_sdist), ("tiktoken download",
                                                                                _from_tiktoken_download)):
        try:
            data = source()
        except (OSError, subprocess.SubprocessError, tarfile.TarError, ImportError) as e:
            tried.append(f"{name}: {e}")
            continue
        if _sha256(data) != R50K_SHA256:
            tried.append(f"{name}: SHA-256 {_sha256(data)} is not tiktoken's {R50K_SHA256}")
            continue
        return _store(data)
    raise SlimPajamaError("cannot obtain the GPT-2 encoding (r50k_base); tried " + "; ".join(tried))


def _gpt2_encoding(fetch: bool):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = load_tiktoken_bpe(str(gpt2_bpe_file(fetch)), expected_hash=R50K_SHA256)
    return tiktoken.Encoding(name="r50k_base", explicit_n_vocab=50257, pat_str=r50k_pat_str,
                             mergeable_ranks=ranks, special_tokens={"<|endoftext|>": GPT2_EOS_ID})


class _Captured(Exception):
    pass


def known_tiktoken_files() -> dict[str, str]:
    """{SHA-256: encoding name} of the .tiktoken files tiktoken's own encodings load (their expected hashes, read
    from tiktoken_ext's constructors without loading anything; the first name of a shared file wins)."""
    from unittest import mock

    from tiktoken_ext import openai_public

    found: dict[str, str] = {}
    for name, make in openai_public.ENCODING_CONSTRUCTORS.items():
        seen = {}

        def capture(url, expected_hash=None, seen=seen):
            seen["sha256"] = expected_hash
            raise _Captured

        with _TIKTOKEN_LOCK, mock.patch.object(openai_public, "load_tiktoken_bpe", capture):
            try:
                make()
            except _Captured:
                pass
            except Exception:  # noqa: BLE001 - a constructor that loads otherwise (gpt2's data-gym files)
                continue
        if seen.get("sha256"):
            found.setdefault(seen["sha256"], name)
    return found


_TIKTOKEN_LOCK = threading.Lock()


def _file_encoding(path: str):
    """A .tiktoken file tiktoken knows (by SHA-256): its encoding, with the encoding's own split pattern and special
    tokens (the file holds only the ranks). Any other file is refused: its pattern and specials are unknown."""
    from unittest import mock

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext import openai_public

    with open(path, "rb") as f:
        digest = _sha256(f.read())
    name = known_tiktoken_files().get(digest)
    if name is None:
        raise SlimPajamaError(
            f"{path} is not a .tiktoken file of a known encoding (SHA-256 {digest[:12]}...; known: "
            f"{', '.join(sorted(set(known_tiktoken_files().values())))}), so its split pattern and special tokens "
            "are unknown: give them in a tokenizer.json (--tokenizer FILE)")
    ranks = load_tiktoken_bpe(path, expected_hash=digest)

    def verified(url, expected_hash=None):
        assert expected_hash == digest, (url, expected_hash)
        return ranks

    with _TIKTOKEN_LOCK, mock.patch.object(openai_public, "load_tiktoken_bpe", verified):
        spec = openai_public.ENCODING_CONSTRUCTORS[name]()
    return tiktoken.Encoding(**spec)


def _named_encoding(name: str):
    import tiktoken

    result: dict = {}

    def load():
        try:
            result["enc"] = tiktoken.get_encoding(name)
        except Exception as e:  # noqa: BLE001 - reported to the user below
            result["err"] = e

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(NETWORK_TIMEOUT_S * 6)
    if "enc" in result:
        return result["enc"]
    if "err" in result:  # tiktoken's message goes on with plugin and version lines: its first line is the news
        why = (str(result["err"]).strip().splitlines() or [type(result["err"]).__name__])[0].rstrip(".")
        if name not in tiktoken.list_encoding_names():
            why += f" (known: {', '.join(sorted({*GPT2_ALIASES, *tiktoken.list_encoding_names()}))}; or a " \
                   ".tiktoken file)"
    else:
        why = f"no answer in {NETWORK_TIMEOUT_S * 6} s (offline?)"
    raise SlimPajamaError(f"tiktoken encoding {name!r} is unavailable: {why}")


_LOADED: dict = {}


def get_encoding(spec: str = defaults.ENCODING, fetch: bool = True, *, eos: str | None = None,
                 bos: str | None = None):
    """The tokenizer `spec` names: a tiktoken Encoding ('gpt2'/'r50k_base' (offline bootstrap), another tiktoken
    name, or a .tiktoken path), or a model's tokenizer.json / tokenizer.model (a file or a folder holding one:
    a `modelfiles.ModelTokenizer`). `eos` (a token) and `bos` (None: none; "": the tokenizer's own; a token)
    apply to a model's tokenizer only."""
    located = modelfiles.locate(spec)
    if located is not None:
        st = os.stat(located[0])  # a file rewritten in place is loaded again
        key = (os.path.abspath(located[0]), st.st_mtime_ns, st.st_size, eos, bos)
        if key not in _LOADED:
            _LOADED[key] = modelfiles.load(*located, eos=eos, bos=bos)
        return _LOADED[key]
    if eos is not None or bos is not None:
        raise SlimPajamaError(f"--eos and --bos apply to a tokenizer.json or tokenizer.model; tiktoken's {spec} has "
                              "its EOS (<|endoftext|>) and no BOS")
    key = "r50k_base" if spec in GPT2_ALIASES else spec
    if key not in _LOADED:
        if key == "r50k_base":
            _LOADED[key] = _gpt2_encoding(fetch)
        elif spec.endswith(".tiktoken") or os.path.isfile(spec):
            if not os.path.isfile(spec):
                raise SlimPajamaError(f"encoding file not found: {spec}")
            _LOADED[key] = _file_encoding(spec)
        else:
            _LOADED[key] = _named_encoding(spec)
    return _LOADED[key]


def encoding_name(spec: str) -> str:
    """The directory name of an encoding's (or a model tokenizer's) token cache."""
    if spec in GPT2_ALIASES:
        return "gpt2"
    located = modelfiles.locate(spec)
    if located is not None:
        return modelfiles.cache_name(located[0])
    return Path(spec).name.removesuffix(".tiktoken") if os.path.isfile(spec) else spec
