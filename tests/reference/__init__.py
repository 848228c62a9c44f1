"""Reference implementations used only by the tests (and a few benchmarks).

They are written for clarity, not speed, and are not part of the ``dhde`` package:

* :mod:`reference.matting_laplacian`: the float64 sparse matting Laplacian straight from Eq. 7
  (checks dhde.propagation.matting's float32 stencil);
* :mod:`reference.caffe_forward`: the released Caffe network's forward pass exactly as the
  authors' MATLAB + Caffe code computes it (checks dhde.model.caffe's import and ``to_model``);
* :mod:`reference.extract`: whole-image multi-scale edge features in one jitted call (checks
  the inference path's features, dhde.estimation.classify).

The tests import them as ``reference.<module>`` (pytest puts ``tests/`` on ``sys.path``, the
folder of the root ``conftest.py``); benchmarks add ``tests/`` to ``sys.path`` themselves.
"""
