"""The main job: defocus maps for one image, a list, or a folder.

    python experiments/estimate.py                         # built-in default input
    python experiments/estimate.py input=photo.jpg
    python experiments/estimate.py input=/path/to/folder
    python experiments/estimate.py 'input=[a.jpg,b.png]' options.seeds=200

Writes, per image, into Hydra's output directory: ``<name>_defocus.npy`` (sigma, pixels),
``<name>_defocus16.png`` (16-bit, sigma x 10000), ``<name>_defocus_color.png``,
``<name>_mask.png`` (Eq. 13 blur mask), ``<name>_sparse.png`` and ``<name>_preview.png``;
plus ``summary.json``. ``<name>`` is the file name with its extension (``photo.jpg``); for a
folder, its path relative to the folder (``sub/x.png``: outputs in ``sub/``). The config is
checked before any image is read (one-line error naming the key); a failed image is reported
(also in ``estimate.log``) and skipped, the others finish; a full disk stops the run.
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
    from dhde.cli.common import cli_errors, run_estimate, use_compilation_cache

    with cli_errors():  # a bad config value or a full disk: one line naming it, exit status 2 / 1
        use_compilation_cache(cfg.get("jax_cache"))
        out = HydraConfig.get().runtime.output_dir
        failures = run_estimate(OmegaConf.to_container(cfg, resolve=True), out)
    if failures:  # the other images finished; say so in the exit status
        raise SystemExit(1)


if __name__ == "__main__":
    main()
