"""Atomic output files: written under a temporary name in the same folder, then renamed.

Every file dhde writes for a user (maps, PNGs, PLYs, JSON, reports, model configs) goes through
:func:`atomic_path`: the data goes to ``.<name>.<random>.tmp<suffix>`` next to the target, is
flushed to disk (``fsync``), and only then replaces the target with ``os.replace`` (atomic on
POSIX and Windows). A crash, a full disk or any exception leaves either the old file or the
complete new one, never a zero-byte or truncated file; the temporary file is removed.

A full disk (``ENOSPC``, also ``EDQUOT``) is raised as :class:`DiskFullError`, whose message
is one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

#: errno values that mean "no room left" (disk full, quota exceeded).
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """No space left on the device (or quota exceeded) while writing an output file."""


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a disk-full error.

    Looks at ``errno`` (ENOSPC, EDQUOT) along the ``__cause__`` / ``__context__`` chain and at
    the text "No space left on device" (libraries such as TensorStore report it only as text).
    """
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DiskFullError):
            return True
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_error(path, exc: BaseException) -> DiskFullError:
    """A :class:`DiskFullError` with a one-line message naming ``path``."""
    return DiskFullError(
        errno.ENOSPC,
        f"disk full while writing {str(path)!r}: free some space and run again "
        "(no partial file was left behind)",
    )


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yields a temporary path in ``path``'s folder; on success it replaces ``path``.

    The caller writes the whole file to the yielded path (any writer: NumPy, Pillow,
    matplotlib, ``open``); it keeps ``path``'s suffix so writers that pick a format by
    extension still work. The parent folder is created. On any exception the temporary file is
    deleted and ``path`` is left as it was; ENOSPC / EDQUOT become :class:`DiskFullError`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(path, e) from e
        raise
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"the writer did not create {str(tmp)!r} (for {str(path)!r})")
        fd = os.open(tmp, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows: fsync needs write access
        try:
            os.fsync(fd)  # a late ENOSPC (delayed allocation, network file systems) shows here
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, Exception) and not isinstance(e, DiskFullError) and is_disk_full(e):
            raise disk_full_error(path, e) from e
        raise


def write_with(path, writer: Callable[[Path], Any]) -> Path:
    """Calls ``writer(tmp_path)`` inside :func:`atomic_path`; returns ``path`` as a Path."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    """Atomically writes ``data`` to ``path``."""
    return write_with(path, lambda t: t.write_bytes(data))


def write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically writes ``text`` to ``path``."""
    return write_with(path, lambda t: t.write_text(text, encoding=encoding))


def write_json(path, obj: Any, **kw) -> Path:
    """Atomically writes ``json.dumps(obj, indent=2, **kw)`` to ``path``."""
    kw.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **kw))


def save_npy(path, array) -> Path:
    """Atomically writes ``array`` as a ``.npy`` file (``path`` should end in ``.npy``)."""
    return write_with(path, lambda t: np.save(t, np.asarray(array), allow_pickle=False))


def save_pil(path, image, **kw) -> Path:
    """Atomically saves a PIL image; the format comes from ``path``'s suffix unless given."""
    from PIL import Image

    kw.setdefault("format", Image.registered_extensions().get(Path(path).suffix.lower()))
    return write_with(path, lambda t: image.save(t, **kw))


def savefig(path, fig, **kw) -> Path:
    """Atomically saves a matplotlib figure (format from ``path``'s suffix unless given)."""
    kw.setdefault("format", Path(path).suffix.lstrip(".").lower() or "png")
    return write_with(path, lambda t: fig.savefig(t, **kw))
