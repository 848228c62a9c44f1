"""Files in and out: images read as float32 RGB in [0, 1] with their HSV value channel
(:mod:`dhde.io.image`), an estimate written to disk as a sigma map, previews, mask and sparse
map (:mod:`dhde.io.outputs`), and atomic file writes (:mod:`dhde.io.atomic`). Layer 1: imports
only ``dhde.checks``, ``dhde.labels`` and ``dhde.config``."""
