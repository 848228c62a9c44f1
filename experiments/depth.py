"""Pseudo-depth (paper 5.4): a 16-bit PNG and a coloured PLY point cloud.

    python experiments/depth.py                              # built-in default input
    python experiments/depth.py input=photo.jpg
    python experiments/depth.py input=/path/to/folder estimate_dir=outputs/maps

Each image's defocus map is estimated once: a ``<stem>_defocus.npy`` in ``estimate_dir`` (e.g. the
output folder of experiments/estimate.py) is reused, and a new one is written there. Parameters
and output files: conf/depth.yaml and dhde/cli/apps.py. A failed image is reported and skipped.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(config_path="../conf", config_name="depth", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from dhde.cli.apps import run_app
    from dhde.cli.common import cli_errors, use_compilation_cache

    with cli_errors():  # a bad config value or a full disk: one line naming it, exit status 2 / 1
        use_compilation_cache(cfg.get("jax_cache"))
        out = HydraConfig.get().runtime.output_dir
        failed = run_app("depth", OmegaConf.to_container(cfg, resolve=True), out)
    if failed:  # the other images finished; the exit status says some failed
        raise SystemExit(1)


if __name__ == "__main__":
    main()
