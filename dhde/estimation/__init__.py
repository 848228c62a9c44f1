"""The estimator (paper section 4): classifying every edge patch (:mod:`dhde.estimation.classify`,
4.1), the sparse defocus map and seed points (:mod:`.sparse_map`, 4.1-4.2), the multi-scale
pyramid beyond the classifier's 2-pixel range (:mod:`.pyramid`), and the public entry point
``estimate_defocus`` that runs all stages (:mod:`.inference`). Layer 6: imports only
dhde.propagation and lower."""
