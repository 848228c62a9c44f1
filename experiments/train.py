"""Train a defocus classifier.

    python experiments/train.py features=B encoding=separate           # one run
    python experiments/train.py +experiment=debug                       # smoke run
    python experiments/train.py -m +experiment=table1                   # paper Table 1
    python experiments/train.py -m +experiment=table1 hydra/launcher=parallel_local

Multi-host (GPU/TPU pods): start the same command on every host with DHDE_DISTRIBUTED=1 (and
the usual JAX coordinator variables, or a SLURM/TPU environment that JAX detects); the global
batch is split over all processes' devices.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    import logging

    import jax

    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax is chatty at INFO
    if os.environ.get("DHDE_DISTRIBUTED") == "1":
        jax.distributed.initialize()
    from dhde.cli.common import cli_errors
    from dhde.training.loop import train_and_evaluate

    workdir = HydraConfig.get().runtime.output_dir
    print(OmegaConf.to_yaml(cfg))
    with cli_errors():  # bad config (checked before any data is built), corrupt checkpoint, NaN loss, full disk
        result = train_and_evaluate(OmegaConf.to_container(cfg, resolve=True), workdir)
    print(f"test tolerance accuracy {100 * result['tolerance_accuracy']:.2f} % "
          f"(exact {100 * result['exact_accuracy']:.2f} %) -> {workdir}")
    return result["tolerance_accuracy"]


if __name__ == "__main__":
    main()
