"""The export writers by `--format` name, and the "format" each writes into its PREFIX.json: what the export
writes with and what recognizes an export (pipelines/paths.py) read the one list."""

from __future__ import annotations

from .chunked import LitDataWriter, MDSWriter
from .megatron import MegatronWriter

WRITERS = {"megatron": MegatronWriter, "litdata": LitDataWriter, "mds": MDSWriter}
FORMATS = {name: writer.FORMAT for name, writer in WRITERS.items()}
