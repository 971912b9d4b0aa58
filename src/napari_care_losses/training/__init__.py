"""Training: the training generator (`trainer`), time budgets (`budget`), memory release
(`memory`) and the docks' sequence of jobs (`jobs`)."""

from .trainer import (
    BatchEnd,
    EpochEnd,
    Failed,
    Finished,
    Started,
    StopFlag,
    run_training,
    train,
)

__all__ = ["BatchEnd", "EpochEnd", "Failed", "Finished", "Started", "StopFlag",
           "run_training", "train"]
