"""A model named by a user: a model spec (None, a model folder, or a Caffe file) to a
:class:`dhde.model.network.DefocusModel`, at once or on first use."""

from __future__ import annotations

from dhde.model.caffe import import_caffe_model
from dhde.model.io import load_model
from dhde.model.network import DefocusModel


def resolve_model(spec) -> DefocusModel:
    """None -> the shipped model; "caffe:/path/model.caffemodel" (or a path ending in
    ``.caffemodel``) -> the imported Caffe model; else a model folder written by ``save_model``.

    Raises what :func:`dhde.model.io.load_model` / :func:`import_caffe_model` raise for a missing
    or corrupt model (``ValueError`` / ``FileNotFoundError``)."""
    if spec is None:
        return load_model()
    s = str(spec)
    if s.startswith("caffe:"):
        return import_caffe_model(s[len("caffe:"):]).to_model()
    if s.endswith(".caffemodel"):
        return import_caffe_model(s).to_model()
    return load_model(s)


def as_model(spec) -> DefocusModel:
    """A :class:`DefocusModel` as is, else :func:`resolve_model` of the spec."""
    return spec if isinstance(spec, DefocusModel) else resolve_model(spec)


class LazyModel:
    """Resolves a model spec on first call only (no model is loaded when every map is cached).

    A failure is remembered and raised again on every later call without retrying.
    """

    def __init__(self, spec):
        self._spec, self._model, self._error = spec, None, None

    def __call__(self) -> DefocusModel:
        if self._error is not None:
            raise self._error
        if self._model is None:
            try:
                self._model = as_model(self._spec)
            except Exception as e:
                self._error = e
                raise
        return self._model
