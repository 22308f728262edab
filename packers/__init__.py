"""Packing algorithms, the shard format and shard readers (installed as `slimpajama.packers`)."""
