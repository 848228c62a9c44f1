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
from dhde.features.extract import EdgeFeatures, extract_features
from dhde.model.network import DefocusModel, DefocusNet, ModelConfig, init_model
from dhde.model.io import load_model, save_model
from dhde.model.caffe import import_caffe_model, read_caffemodel
from dhde.filters.rolling_guidance import joint_bilateral_filter, rolling_guidance_filter
from dhde.filters.bilateral import probability_joint_bilateral_filter
from dhde.estimation.sparse_map import add_seed_points, random_seed_points, sparse_defocus_map
from dhde.propagation.matting import assemble_matting_laplacian, laplacian_apply, matting_laplacian_coefficients
from dhde.propagation.solver import PropagationResult, propagate
from dhde.filters.weighted_median import joint_weighted_median
from dhde.estimation import pyramid
from dhde.estimation.inference import (
    DefocusResult,
    EstimateOptions,
    blur_probability,
    estimate_core,
    estimate_defocus,
    estimate_defocus_batch,
)
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
