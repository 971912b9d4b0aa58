"""Training settings: one record per setting (`settings`) and the typed :class:`TrainConfig`
built from them (`train`)."""

from .train import TrainConfig, config_from_args, versions

__all__ = ["TrainConfig", "config_from_args", "versions"]
