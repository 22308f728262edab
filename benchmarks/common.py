"""Helpers shared by the benchmarks: cached generated corpora and peak memory."""

from __future__ import annotations

import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("SLIMPAJAMA_BENCH_CACHE", os.path.join(HERE, ".cache"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sample_corpus(docs: int, seed: int = 1) -> str:
    """A generated sample corpus of `docs` documents, made once and reused across bench runs."""
    from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE, generate_corpus

    out = os.path.join(CACHE, f"sample-{docs}-{seed}")
    if not os.path.exists(os.path.join(out, GROUND_TRUTH_FILE)):
        t = time.perf_counter()
        generate_corpus(out, seed=seed, docs=docs, workers=os.cpu_count() or 1)
        print(f"generated {out} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return out


def timed(fn, repeat: int = 3):
    """Best wall time of `repeat` runs (the least disturbed by the machine) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


# text no one here wrote, found on any machine that runs the benchmarks: the shared corpora's samples (Common
# Crawl pages, arXiv LaTeX), the bundled UDHR translations (every script), the Python standard library and
# installed packages' sources and docs, and the system's documentation
def _real_files() -> list[tuple[str, str]]:
    import sysconfig

    shared = os.path.join(HERE, "..", "..", "shared", "corpora")
    out = [(os.path.join(shared, n), s) for n, s in (("cc-en-head-sample.jsonl", "RedPajamaCommonCrawl"),
                                                      ("redpajama-arxiv-sample.jsonl", "RedPajamaArXiv"))]
    out.append((os.path.join(HERE, "..", "slimpajama", "data", "multilingual.txt"), "RedPajamaWikipedia"))
    roots = [(sysconfig.get_paths()["stdlib"], "RedPajamaGithub"), (sysconfig.get_paths()["purelib"], "RedPajamaGithub"),
             ("/usr/share/doc", "RedPajamaStackExchange"), ("/usr/share/common-licenses", "RedPajamaBook")]
    for root, source in roots:
        for dirpath, dirnames, files in os.walk(root):
            dirnames.sort()
            out.extend((os.path.join(dirpath, f), source) for f in sorted(files)
                       if f.endswith((".py", ".txt", ".md", ".rst", ".html", ".gz")) or "copyright" in f
                       or root.endswith("licenses"))
    return out


def _real_docs(path: str, source: str):
    import gzip
    import json

    try:
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return
    if path.endswith(".jsonl"):
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)["text"], source
    elif path.endswith("multilingual.txt"):
        yield from ((block, source) for block in text.split("\n\n") if len(block) > 200)
    elif len(text) > 200:
        yield text, source


def _cycle_docs(paths: list[str], source: str):
    while True:
        for path in paths:
            for text, _ in _real_docs(path, source):
                yield text


def real_corpus(mb: float, file_mb: float = 40.0) -> str:
    """A RedPajama-style corpus (`<out>/<source>/part-*.jsonl.zst`, `meta.redpajama_set_name`) of `mb` MB of the
    real text above, cycled (a repeat is an exact duplicate, as real crawls hold), made once and reused."""
    import orjson
    import zstandard

    out = os.path.join(CACHE, f"real-{mb:g}MB")
    done = os.path.join(out, ".complete")
    if os.path.exists(done):
        return out
    files, written, n = _real_files(), 0, {}  # n: files per source so far
    writers: dict[str, tuple] = {}

    def writer(source):
        fh, zw, size = writers.get(source, (None, None, 0))
        if fh is None or size >= file_mb * 1e6:
            if zw is not None:
                zw.close()
                fh.close()
            os.makedirs(os.path.join(out, source), exist_ok=True)
            n[source] = n.get(source, -1) + 1
            fh = open(os.path.join(out, source, f"part-{n[source]:05d}.jsonl.zst"), "wb")
            zw, size = zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False), 0
        writers[source] = (fh, zw, size)
        return source

    by_source: dict[str, list[str]] = {}
    for path, source in files:
        by_source.setdefault(source, []).append(path)
    avail = {s: sum(os.path.getsize(p) for p in ps if os.path.exists(p)) or 1 for s, ps in by_source.items()}
    streams = {s: _cycle_docs(ps, s) for s, ps in by_source.items()}
    done_by = dict.fromkeys(by_source, 0)
    while written < mb * 1e6:  # the source furthest behind its share of what this machine holds goes next
        src = min(done_by, key=lambda s: done_by[s] / avail[s])
        text = next(streams[src])
        line = orjson.dumps({"text": text, "meta": {"redpajama_set_name": src}}) + b"\n"
        fh, zw, size = writers[writer(src)]
        zw.write(line)
        writers[src] = (fh, zw, size + len(text.encode()))
        written += len(text.encode())
        done_by[src] += len(text.encode())
    for fh, zw, _ in writers.values():
        zw.close()
        fh.close()
    open(done, "w").close()
    return out


# Web-shaped real text: HTML pages of the documentation installed on this machine, tags stripped, navigation,
# headers and footers kept (what an HTML-to-text extractor leaves of a crawled page). English, a few non-ASCII
# characters (pilcrows, curly quotes, dashes, arrows, ©) in nearly every page: the shape of RedPajama's
# CommonCrawl/C4 text, which the code-and-docs corpus above flatters.
def _html_files() -> list[str]:
    import glob
    import sysconfig

    roots = ["/usr/share/doc", "/usr/lib/node_modules", "/usr/lib/google-cloud-sdk", "/usr/share/gtk-doc",
             sysconfig.get_paths()["data"], *sorted(glob.glob(os.path.expanduser("~/.rustup/toolchains/*/share/doc")))]
    out = []
    for root in roots:
        for dirpath, dirnames, files in os.walk(root):
            dirnames.sort()
            out.extend(os.path.join(dirpath, f) for f in sorted(files) if f.endswith((".html", ".htm")))
    return out


def html_to_text(html: str) -> str:
    """Visible text of a page: script/style dropped, a line break at every block element, entities decoded."""
    from html.parser import HTMLParser

    blocks = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section", "nav", "header",
              "footer", "table", "ul", "ol", "dt", "dd", "title", "blockquote"}
    parts: list[str] = []
    skip = [0]

    class _Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag in ("script", "style"):
                skip[0] += 1
            elif tag in blocks:
                parts.append("\n")

        def handle_endtag(self, tag):
            if tag in ("script", "style"):
                skip[0] = max(0, skip[0] - 1)
            elif tag in blocks:
                parts.append("\n")

        def handle_data(self, data):
            if not skip[0]:
                parts.append(data)

    _Parser(convert_charrefs=True).feed(html)
    lines = (" ".join(line.split()) for line in "".join(parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _web_docs(paths: list[str]):
    for path in paths:
        try:
            if os.path.getsize(path) > 4_000_000:
                continue
            with open(path, encoding="utf-8") as f:
                text = html_to_text(f.read())
        except (OSError, UnicodeDecodeError):
            continue
        if len(text) > 500:
            yield text


def web_corpus(mb: float, file_mb: float = 40.0) -> str:
    """`<out>/RedPajamaCommonCrawl/part-*.jsonl.zst` of `mb` MB of the pages above (cycled when this machine holds
    fewer; each page once before any repeats), made once and reused."""
    import orjson
    import zstandard

    out = os.path.join(CACHE, f"web-{mb:g}MB")
    done = os.path.join(out, ".complete")
    if os.path.exists(done):
        return out
    paths = _html_files()
    if not paths:
        raise SystemExit("error: no HTML documentation found on this machine for the web-shaped corpus")
    import random

    random.Random(0).shuffle(paths)  # mix the sites, as a crawl's file does
    os.makedirs(os.path.join(out, "RedPajamaCommonCrawl"), exist_ok=True)
    written, part, size, zw, fh = 0, 0, 0, None, None
    while written < mb * 1e6:
        for text in _web_docs(paths):
            if zw is None or size >= file_mb * 1e6:
                if zw is not None:
                    zw.close()
                    fh.close()
                fh = open(os.path.join(out, "RedPajamaCommonCrawl", f"part-{part:05d}.jsonl.zst"), "wb")
                zw, size, part = zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False), 0, part + 1
            zw.write(orjson.dumps({"text": text, "meta": {"redpajama_set_name": "RedPajamaCommonCrawl"}}) + b"\n")
            n = len(text.encode())
            size, written = size + n, written + n
            if written >= mb * 1e6:
                break
    zw.close()
    fh.close()
    open(done, "w").close()
    return out
