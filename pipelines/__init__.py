"""Ray orchestration of the stages (installed as `slimpajama.pipelines`)."""

from .docstage import DocumentStage, ReadOptions, file_tasks
from .normalize import NormalizeStage
from .runner import ShardOutcome, ShardTask, StageReport, init_ray, run_stage

__all__ = ["DocumentStage", "NormalizeStage", "ReadOptions", "ShardOutcome", "ShardTask", "StageReport", "file_tasks",
           "init_ray", "run_stage"]
