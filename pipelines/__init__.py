"""Ray orchestration of the stages (installed as `slimpajama.pipelines`).

The names below load on first use (PEP 562): `slimpajama train` imports `pipelines.interrupts` for its signal
handling on a GPU machine that may lack the corpus stages' packages (ftfy, datasketch, ray).
"""

import importlib

_EXPORTS = {"ReadOptions": "slimpajama.io.reading", "Stage": "stage", "Task": "stage", "TaskResult": "stage",
            "DocumentStage": "docstage", "file_tasks": "docstage", "NormalizeStage": "normalize",
            "StageReport": "runner", "run_stage": "runner", "run_documents": "documents", "init_ray": "cluster"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(importlib.import_module(module if "." in module else f".{module}", __name__), name)
