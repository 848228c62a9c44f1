"""Glue so dhde's TFDS builders work from inside an installed package without TensorFlow."""

from __future__ import annotations

import inspect

import tensorflow_datasets as tfds
from etils import epath


class InPackageBuilderMixin:
    """Overrides ``code_path``: TFDS's own lookup of a packaged builder's source goes through
    ``importlib_resources`` (not a dependency of dhde); the result is the same file."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))
