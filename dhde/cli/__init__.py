"""The work behind the command-line scripts in ``experiments/``: resolving inputs and models,
the per-image loop and writing results (:mod:`dhde.cli.common`), and the application runs of
paper 5.3-5.4 (:mod:`dhde.cli.apps`) and the README gallery (:mod:`dhde.cli.gallery`). Layer 9,
the top: it may import any dhde module, and nothing in dhde imports it."""
