"""`python -m slimpajama.train_minimal ...` (and `torchrun ... -m slimpajama.train_minimal ...`): the same command,
with the same options, as `slimpajama train`."""

from slimpajama.cli.train import train

if __name__ == "__main__":
    train.main(prog_name="python -m slimpajama.train_minimal")
