"""Training data (paper 5.1): sharp source photographs (scikit-image, Debian packages, folders),
their screening, camera realism and disk PSFs, patch sampling, the ``defocus_patches`` TFDS builder,
its config (:class:`dhde.data.config.DataConfig`) and portable bundles."""
