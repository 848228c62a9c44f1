"""Evaluation of defocus maps: metrics, data sets, synthetic scenes, reports, a baseline.

Flat re-exports of :mod:`dhde.evaluation.metrics`, :mod:`.pr_curves`, :mod:`.synthetic`,
:mod:`.datasets`, :mod:`.report` and :mod:`.baselines`.
"""

from dhde.evaluation.metrics import (
    DEFAULT_ALPHA,
    DEFAULT_BETA2,
    as_binary_mask,
    disk_radius_to_sigma,
    f_measure,
    load_conversion_table,
    normalize_map,
    normalized_mae,
    rescale_map,
    segment,
    segmentation_accuracy,
    segmentation_threshold,
    sigma_mae,
)
from dhde.evaluation.pr_curves import (
    DEFAULT_N_THRESHOLDS,
    PrecisionRecallAccumulator,
    PRCounts,
    best_threshold_accuracy,
    evaluate_blur_detection,
    max_f_measure,
    precision_recall_counts,
    precision_recall_curve,
    precision_recall_from_counts,
    sweep_thresholds,
)
from dhde.evaluation.synthetic import (
    default_levels,
    disparity_to_sigma,
    fill_invalid,
    render_defocus,
    stereo_motorcycle_scene,
)
from dhde.evaluation.baselines import laplacian_baseline
from dhde.evaluation.datasets import (
    BUILDERS,
    CuhkBlurDetection,
    RtfDefocus,
    StereoMotorcycleConfig,
    StereoMotorcycleDefocus,
    build_data_source,
    cuhk_files,
    decode_record,
    load_cuhk,
    load_rtf,
    load_stereo_motorcycle,
    rtf_files,
)
from dhde.evaluation.report import markdown_table, plot_precision_recall, side_by_side_panel, write_report

__all__ = [
    "DEFAULT_ALPHA", "DEFAULT_BETA2", "DEFAULT_N_THRESHOLDS", "PrecisionRecallAccumulator",
    "PRCounts", "as_binary_mask", "best_threshold_accuracy", "disk_radius_to_sigma",
    "evaluate_blur_detection", "f_measure", "load_conversion_table", "max_f_measure",
    "normalize_map", "normalized_mae", "precision_recall_counts", "precision_recall_curve",
    "precision_recall_from_counts", "rescale_map", "segment", "segmentation_accuracy",
    "segmentation_threshold", "sigma_mae", "sweep_thresholds",
    "default_levels", "disparity_to_sigma", "fill_invalid", "render_defocus",
    "stereo_motorcycle_scene", "laplacian_baseline",
    "BUILDERS", "CuhkBlurDetection", "RtfDefocus", "StereoMotorcycleConfig",
    "StereoMotorcycleDefocus", "build_data_source", "cuhk_files", "decode_record", "load_cuhk",
    "load_rtf", "load_stereo_motorcycle", "rtf_files",
    "markdown_table", "plot_precision_recall", "side_by_side_panel", "write_report",
]
