"""Glue so dhde's TFDS builders work from inside an installed package without TensorFlow."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os

import tensorflow_datasets as tfds
from etils import epath


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


@contextlib.contextmanager
def in_memory_shuffle(fraction: float = 0.5):
    """Lets TFDS keep a split's shuffle buffer in memory up to ``fraction`` of the RAM.

    TFDS buffers a split's serialised examples in memory up to 1 GB and then spills them to disk
    through ``tf.io.gfile``, which needs TensorFlow (not a dependency of dhde). Without
    TensorFlow the buffer limit is raised instead; a split that is larger still gets a clear
    error naming the two ways out.
    """
    from tensorflow_datasets.core import shuffle

    if importlib.util.find_spec("tensorflow") is not None:
        yield
        return
    old = shuffle.MAX_MEM_BUFFER_SIZE
    limit = max(old, int(fraction * _physical_memory()))
    shuffle.MAX_MEM_BUFFER_SIZE = limit
    try:
        yield
    except ModuleNotFoundError as e:
        if e.name != "tensorflow":
            raise
        raise MemoryError(
            f"a split of this data set is larger than the in-memory build buffer ({limit / 2**30:.1f} GiB) "
            "and TFDS needs TensorFlow to spill it to disk: install tensorflow, or make the split "
            "smaller (max_per_scale, max_images)"
        ) from e
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = old


class InPackageBuilderMixin:
    """Overrides ``code_path``: TFDS's own lookup of a packaged builder's source goes through
    ``importlib_resources`` (not a dependency of dhde); the result is the same file.

    ``download_and_prepare`` runs under :func:`in_memory_shuffle`, so builds larger than 1 GB
    per split work without TensorFlow."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))

    def download_and_prepare(self, *args, **kwargs):
        with in_memory_shuffle():
            return super().download_and_prepare(*args, **kwargs)
