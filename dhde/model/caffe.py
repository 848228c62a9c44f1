"""The authors' released Caffe model (paper 4.1) as a dhde model.

:func:`import_caffe_model` reads the released DHDE ``.caffemodel`` (with the wire-format reader
of :mod:`dhde.model.caffe_format`) and converts its weights to dhde's parameter layout; an
:class:`ImportedModel` keeps them with the conventions the network was trained with, and
:meth:`ImportedModel.to_model` makes the :class:`dhde.model.network.DefocusModel` that the rest of
dhde runs (including the uint8 cast of the hand-crafted features and the ReLU on the logits).
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dhde.model.caffe_format import read_caffemodel
from dhde.model.network import DefocusModel, ModelConfig

#: Caffe layer name -> (dhde group, Caffe weight shape). fc1's 145 inputs are
#: [DCT 40, gradient 40, SVD 40, CNN 25].
RELEASED_LAYERS = {
    "conv1": ("deep", (25, 3, 3, 3)),
    "conv2": ("deep", (50, 25, 3, 3)),
    "conv3": ("deep", (50, 50, 3, 3)),
    "conv4": ("deep", (25, 50, 1, 1)),
    "fc1": ("classifier", (300, 145)),
    "fc2": ("classifier", (150, 300)),
    "fc3": ("classifier", (11, 150)),
}
RELEASED_PARAM_COUNT = 126_436
#: Imported weights above this magnitude mean a damaged file (the released model's largest is 0.89).
MAX_ABS_WEIGHT = 1e4


@partial(jax.tree_util.register_dataclass, data_fields=["params"],
         meta_fields=["feature_set", "encoding", "feature_scale", "quantize_uint8", "relu_logits", "source"])
@dataclasses.dataclass(frozen=True)
class ImportedModel:
    """The released model in dhde's layout (a pytree: ``params`` is the only leaf-holding field).

    ``params`` = {"deep": {"conv1".."conv4": {"kernel" HWIO, "bias"}},
    "classifier": {"fc1", "fc2", "fc3": {"kernel" (in, out), "bias"}}}, float32 jax arrays.
    The metadata says how the model was trained: feature set "B" (all four features), the
    "separate" scale encoding, hand-crafted features multiplied by ``feature_scale`` and cast
    to uint8 (``quantize_uint8``), and a ReLU on the logits (``relu_logits``).
    """

    params: dict
    feature_set: str = "B"
    encoding: str = "separate"
    feature_scale: float = 255.0
    quantize_uint8: bool = True
    relu_logits: bool = True
    source: str = ""

    def to_model(self) -> DefocusModel:
        """The same network as a :class:`dhde.model.network.DefocusModel`, usable everywhere in dhde
        (``estimate_defocus(image, model=imported.to_model())``)."""
        config = ModelConfig(
            feature_set=self.feature_set, encoding=self.encoding, hand_scale=self.feature_scale,
            quantize_uint8=self.quantize_uint8, relu_logits=self.relu_logits,
        )
        return DefocusModel(params=self.params, config=config)


def _strip_leading_ones(a: np.ndarray, ndim: int) -> np.ndarray:
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    return a


def import_caffe_model(path: str | os.PathLike) -> ImportedModel:
    """Loads the released DHDE ``.caffemodel`` into dhde's parameter layout.

    Conventions (from the authors' MATLAB + Caffe code): Caffe convolution weights (out, in, kh, kw)
    become HWIO kernels with the two spatial axes SWAPPED, ``kernel[a, b, i, o] = W[o, i, b, a]``,
    because matcaffe hands Caffe every patch transposed; InnerProduct weights (out, in) become
    (in, out). Legacy 4-D blob shapes with leading 1s are accepted.

    Raises:
      ValueError: unreadable file (see :func:`read_caffemodel`), a missing or unexpected layer,
        a blob count other than 2 (weight, bias), a shape that differs from the architecture,
        or NaN / infinite / absurdly large (> ``MAX_ABS_WEIGHT``) weights (a damaged file);
        messages name the file, the layer and the shapes.
    """
    blobs = read_caffemodel(path)
    src = str(path)
    missing = [n for n in RELEASED_LAYERS if n not in blobs]
    extra = [n for n in blobs if n not in RELEASED_LAYERS]
    if missing or extra:
        raise ValueError(f"{src!r} does not have the DHDE architecture: missing layers {missing}, "
                         f"unexpected layers with weights {extra} (found {list(blobs)})")
    params: dict[str, dict] = {"deep": {}, "classifier": {}}
    count = 0
    for name, (group, wshape) in RELEASED_LAYERS.items():
        bl = blobs[name]
        if len(bl) != 2:
            raise ValueError(f"{src!r}: layer {name!r} has {len(bl)} blobs, expected 2 (weight, bias)")
        w = _strip_leading_ones(bl[0], len(wshape))
        b = _strip_leading_ones(bl[1], 1)
        if w.shape != wshape or b.shape != (wshape[0],):
            raise ValueError(f"{src!r}: layer {name!r} has weight shape {bl[0].shape} and bias shape "
                             f"{bl[1].shape}, expected {wshape} and {(wshape[0],)}")
        for what, blob in (("weights", w), ("biases", b)):
            finite = np.isfinite(blob)
            if not finite.all():
                raise ValueError(f"{src!r}: layer {name!r} has {int((~finite).sum())} NaN or infinite {what}: "
                                 "the file is damaged")
            if blob.size and float(np.abs(blob).max()) > MAX_ABS_WEIGHT:
                raise ValueError(f"{src!r}: layer {name!r} has {what} up to {float(np.abs(blob).max()):.3g} "
                                 f"(a trained network stays far below {MAX_ABS_WEIGHT:g}): the file is damaged")
        kernel = w.transpose(3, 2, 1, 0) if group == "deep" else w.T
        params[group][name] = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}
        count += w.size + b.size
    if count != RELEASED_PARAM_COUNT:  # pragma: no cover - implied by the shapes above
        raise ValueError(f"{src!r}: {count} parameters, expected {RELEASED_PARAM_COUNT}")
    return ImportedModel(params=params, source=src)
