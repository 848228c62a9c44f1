"""Applications of a defocus map (paper 5.3-5.4): blur magnification, all-in-focus
deconvolution, pseudo-depth and point clouds, blurred/sharp segmentation.

All take an RGB image float32 (H, W, 3) in [0, 1] and/or a defocus map float32 (H, W) in
sigma units (pixels of Gaussian std), as produced by dhde's estimator.

Each application's parameters, with their one set of defaults (used by the functions' keyword
defaults, the command-line entry points and ``conf/{magnify,all_in_focus,depth,segment}.yaml``):
:class:`MagnifyParams`, :class:`AllInFocusParams`, :class:`DepthParams`, :class:`SegmentParams`.
"""

from dhde.applications.deblur import DEFAULT_LAMBDA, AllInFocusParams, all_in_focus, shrink
from dhde.applications.depth import DepthParams, point_cloud, pseudo_depth, save_depth_png, save_point_cloud_ply
from dhde.applications.magnify import MagnifyParams, magnify_blur
from dhde.applications.segmentation import (
    SegmentParams,
    blur_threshold,
    otsu_threshold,
    overlay_mask,
    segment_blur,
    tau_sweep_figure,
    threshold_sweep,
)

__all__ = [
    "AllInFocusParams",
    "DEFAULT_LAMBDA",
    "DepthParams",
    "MagnifyParams",
    "SegmentParams",
    "all_in_focus",
    "blur_threshold",
    "magnify_blur",
    "otsu_threshold",
    "overlay_mask",
    "point_cloud",
    "pseudo_depth",
    "save_depth_png",
    "save_point_cloud_ply",
    "segment_blur",
    "shrink",
    "tau_sweep_figure",
    "threshold_sweep",
]
