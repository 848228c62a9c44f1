"""The main job: defocus maps for one image, a list, or a folder.

    python experiments/estimate.py                         # built-in default input
    python experiments/estimate.py input=photo.jpg
    python experiments/estimate.py input=/path/to/folder
    python experiments/estimate.py 'input=[a.jpg,b.png]' options.seeds=200

Writes, per image, into Hydra's output directory: ``<stem>_defocus.npy`` (sigma, pixels),
``<stem>_defocus16.png`` (16-bit, sigma x 10000), ``<stem>_defocus_color.png``,
``<stem>_mask.png`` (Eq. 13 blur mask), ``<stem>_sparse.png`` and ``<stem>_preview.png``;
plus ``summary.json``. A failed image is reported and skipped; the others finish.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(config_path="../conf", config_name="estimate", version_base="1.3")
def main(cfg: DictConfig) -> int:
    import logging

    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax is chatty at INFO
    from dhde.cli import cli_errors, run_estimate, use_compilation_cache

    with cli_errors():  # a bad config value or a full disk: one line naming it, exit status 2 / 1
        use_compilation_cache(cfg.get("jax_cache"))
        out = HydraConfig.get().runtime.output_dir
        failures = run_estimate(OmegaConf.to_container(cfg, resolve=True), out)
    if failures:  # the other images finished; say so in the exit status
        raise SystemExit(1)


if __name__ == "__main__":
    main()
