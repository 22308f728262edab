"""Stand-in for torchvision in the peers' virtualenv: PyPI's torchvision needs a CUDA torch (a CPU torch fails to
load its operators), and MosaicML streaming imports it only for its image datasets, never used here."""
