"""bioimage.io model packages: export (:mod:`.bioimageio_export`) and import
(:mod:`.bioimageio_import`). Nothing here imports TensorFlow or bioimageio at import time."""

from .bioimageio_export import ExportError, ExportResult, add_parser, export_package
from .bioimageio_import import PackageError, resolve_model_source

__all__ = ["ExportError", "ExportResult", "PackageError", "add_parser", "export_package",
           "resolve_model_source"]
