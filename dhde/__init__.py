"""dhde: single-image defocus estimation in JAX (Park et al., CVPR 2017, and beyond).

Flat re-exports of the public API; each stage of the paper lives in its own module (see the
README's layout table).
"""

from dhde.io.image import MIN_SIDE, load_image, save_image, value_channel
from dhde.labels import NUM_LABELS, SIGMAS, TOLERANCE, label_to_sigma, sigma_to_label
from dhde.filters.gaussian import gaussian_blur, gaussian_kernel1d
from dhde.filters.edges import ESTIMATION_THRESHOLDS, TRAINING_THRESHOLDS, canny, scale_map
from dhde.filters.patches import LARGE, SMALL, capacity_for, edge_coordinates, extract_patches, pad_small_to_large
from dhde.features.dct import dct_feature
from dhde.features.gradient import gradient_feature, gradient_magnitude
from dhde.features.singular_values import singular_value_feature
from dhde.model.cnn import DeepFeature
from dhde.features.encoding import ENCODINGS, encode_scale, input_width, parse_feature_set
from dhde.model.network import DefocusModel, DefocusNet, ModelConfig, init_model
from dhde.model.io import load_model, save_model
from dhde.model.caffe import import_caffe_model
from dhde.model.caffe_format import read_caffemodel
from dhde.filters.rolling_guidance import joint_bilateral_filter, rolling_guidance_filter
from dhde.filters.bilateral import probability_joint_bilateral_filter
from dhde.estimation.sparse_map import add_seed_points, random_seed_points, sparse_defocus_map
from dhde.propagation.matting import laplacian_apply, matting_laplacian_coefficients
from dhde.propagation.solver import PropagationResult, propagate
from dhde.filters.weighted_median import joint_weighted_median
from dhde.estimation import pyramid
from dhde.estimation.inference import (
    DefocusResult,
    EstimateOptions,
    estimate_core,
    estimate_defocus,
    estimate_defocus_batch,
)
from dhde.estimation.probability import blur_probability
from dhde.applications import (
    all_in_focus,
    magnify_blur,
    otsu_threshold,
    overlay_mask,
    pseudo_depth,
    save_depth_png,
    save_point_cloud_ply,
    segment_blur,
    tau_sweep_figure,
    threshold_sweep,
)

__version__ = "0.1.0"

#: The public API, by stage of the paper (``from dhde import *`` imports exactly these).
__all__ = [
    # image I/O and blur labels
    "MIN_SIDE", "load_image", "save_image", "value_channel",
    "NUM_LABELS", "SIGMAS", "TOLERANCE", "label_to_sigma", "sigma_to_label",
    # filters: Gaussian blur, edges and scale map (3.1), patches (3.1)
    "gaussian_blur", "gaussian_kernel1d",
    "ESTIMATION_THRESHOLDS", "TRAINING_THRESHOLDS", "canny", "scale_map",
    "LARGE", "SMALL", "capacity_for", "edge_coordinates", "extract_patches", "pad_small_to_large",
    # features (3.2-3.6)
    "dct_feature", "gradient_feature", "gradient_magnitude", "singular_value_feature",
    "ENCODINGS", "encode_scale", "input_width", "parse_feature_set",
    # the model (3.5, 4.1) and its files
    "DeepFeature", "DefocusModel", "DefocusNet", "ModelConfig", "init_model",
    "load_model", "save_model", "import_caffe_model", "read_caffemodel",
    # filtering of the sparse map (4.2)
    "joint_bilateral_filter", "rolling_guidance_filter", "probability_joint_bilateral_filter",
    "joint_weighted_median",
    # sparse map and propagation (4.2-4.3)
    "add_seed_points", "random_seed_points", "sparse_defocus_map",
    "laplacian_apply", "matting_laplacian_coefficients", "PropagationResult", "propagate",
    # the estimator (section 4, and the multi-scale extension)
    "pyramid", "DefocusResult", "EstimateOptions", "blur_probability", "estimate_core",
    "estimate_defocus", "estimate_defocus_batch",
    # applications (5.3-5.4)
    "all_in_focus", "magnify_blur", "otsu_threshold", "overlay_mask", "pseudo_depth",
    "save_depth_png", "save_point_cloud_ply", "segment_blur", "tau_sweep_figure", "threshold_sweep",
]
