"""dhde: single-image defocus estimation in JAX (Park et al., CVPR 2017, and beyond)."""

from dhde.image import load_image, save_image, value_channel
from dhde.labels import NUM_LABELS, SIGMAS, label_to_sigma, sigma_to_label
from dhde.gaussian import gaussian_blur, gaussian_kernel1d

__version__ = "0.1.0"
