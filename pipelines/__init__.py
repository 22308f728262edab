"""Ray orchestration of the stages (installed as `slimpajama.pipelines`).

The names below load on first use (PEP 562): `slimpajama train` imports `pipelines.runner` for its signal
handling on a GPU machine that may lack the corpus stages' packages (ftfy, datasketch, ray).
"""

import importlib

_EXPORTS = {"ReadOptions": "slimpajama.io.reading", "DocumentStage": "docstage", "file_tasks": "docstage",
            "NormalizeStage": "normalize", "ShardOutcome": "runner", "ShardTask": "runner", "StageReport": "runner",
            "init_ray": "runner", "run_stage": "runner"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(importlib.import_module(module if "." in module else f".{module}", __name__), name)
