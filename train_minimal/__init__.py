"""A small BTLM-style trainer that reads the packed shards (installed as `slimpajama.train_minimal`)."""
