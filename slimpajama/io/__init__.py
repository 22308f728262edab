"""Input and output: discovery of corpus files, compressed streams, JSON-lines and parquet readers, local and
object storage, atomic writers, stage output manifests, and what a path holds."""
