"""Source names: RedPajama-1T's folders and `red_pajama_subset` values -> SlimPajama's set names.

A document's source is `meta.redpajama_set_name` when it has one (SlimPajama's own files), else its
`red_pajama_subset` (RedPajama-Data-1T's rows), else the first folder under the input root, else `--source`. The
subset and the folder go through the source map: RedPajama-1T's names by default, plus `--source-map` for other
corpora (`folder=Name,...` or a JSON object file); a name the map does not know stays as it is.
"""

from __future__ import annotations

import json
import os

from slimpajama.errors import SlimPajamaError

# RedPajama-Data-1T: folders arxiv/ book/ c4/ common_crawl/<dump>/ github/ stackexchange/ wikipedia/, and the
# values of its rows' red_pajama_subset (which says "books" where the folder says "book").
REDPAJAMA_1T = {
    "arxiv": "RedPajamaArXiv",
    "book": "RedPajamaBook",
    "books": "RedPajamaBook",
    "c4": "RedPajamaC4",
    "common_crawl": "RedPajamaCommonCrawl",
    "github": "RedPajamaGithub",
    "stackexchange": "RedPajamaStackExchange",
    "wikipedia": "RedPajamaWikipedia",
}


def source_map(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """The default map with the user's entries over it."""
    return {**REDPAJAMA_1T, **dict(extra)}


def parse_source_map(spec: str | None) -> tuple[tuple[str, str], ...]:
    """`folder=Name,other=Name2` or the path of a JSON file holding {"folder": "Name"} -> sorted pairs."""
    if not spec:
        return ()
    if os.path.isfile(spec):
        try:
            with open(spec, "rb") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise SlimPajamaError(f"--source-map {spec}: not a readable JSON file ({e})") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                 for k, v in data.items()):
            raise SlimPajamaError(f"--source-map {spec}: expected a JSON object of names, e.g. "
                                  '{"book": "RedPajamaBook"}')
        return tuple(sorted(data.items()))
    pairs = []
    for item in spec.split(","):
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise SlimPajamaError(f"--source-map: {item!r} is not NAME=SOURCE (e.g. book=RedPajamaBook), nor a "
                                  "JSON file")
        pairs.append((name.strip(), target.strip()))
    return tuple(sorted(pairs))
