"""Image filters, all in JAX: Gaussian blur (:mod:`dhde.filters.gaussian`), MATLAB-style Canny
edges and the two-scale edge map of paper 3.1 (:mod:`.edges`), edge coordinates and fixed-size
patches (:mod:`.patches`), and the filters of paper 4.2-4.3: the rolling guidance filter that
makes the guidance image (:mod:`.rolling_guidance`), the probability-joint bilateral filter of
the sparse map (Eq. 6, :mod:`.bilateral`) and the joint weighted median post-filter
(:mod:`.weighted_median`). Layer 2: imports only dhde.io and lower."""
