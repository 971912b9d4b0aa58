"""Training: the training generator (`trainer`) and its events (`events`), time budgets
(`budget`), memory release (`memory`), the docks' sequence of jobs (`jobs`) and its progress
(`progress`)."""

from .trainer import (
    BatchEnd,
    EpochEnd,
    Failed,
    Finished,
    Finishing,
    Planned,
    Started,
    StopFlag,
    run_training,
    train,
)

__all__ = ["BatchEnd", "EpochEnd", "Failed", "Finished", "Finishing", "Planned", "Started",
           "StopFlag", "run_training", "train"]
