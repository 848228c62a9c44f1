"""Pack a training source's photographs into a compact bundle for building patches elsewhere.

The bundle holds every kept source photograph of a data config, box-downscaled by
``data.downscale`` (so the patches built from it use ``data.downscale=1``) and saved as JPEG,
in ``train/``, ``validation/`` and ``test/`` folders, with the source manifest. A machine with
a GPU and no Debian packages then builds the data set from it (``data.source=folders:BUNDLE``,
see ``benchmarks/train_paper_scale.sh``).

    python experiments/make_bundle.py data=debian out=bundle            # ~20 MiB
    python experiments/make_bundle.py data=debian out=bundle max_mib=64 quality=95
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(config_path="../conf", config_name="bundle", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from dhde.data.bundle import make_bundle

    path = make_bundle(cfg.data.source, cfg.out, downscale=int(cfg.data.downscale),
                       seed=int(cfg.data.seed), quality=int(cfg.quality), max_mib=float(cfg.max_mib))
    print(f"bundle written to {path}")


if __name__ == "__main__":
    main()
