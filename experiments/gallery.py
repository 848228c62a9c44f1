"""Regenerate the README gallery: input, defocus map, blur mask, magnified blur, all-in-focus
and pseudo-depth, one PNG per default input (the built-in stereo_motorcycle rendering and
scikit-image's chelsea, a photograph with a naturally defocused background).

    python experiments/gallery.py                                  # -> docs/gallery/*.png
    python experiments/gallery.py model=caffe:/path/DHDE_model.caffemodel
"""

import os
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(config_path="../conf", config_name="gallery", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from dhde.cli.gallery import run_gallery
    from dhde.cli.common import cli_errors, use_compilation_cache

    with cli_errors():  # a bad config value or a full disk: one line naming it
        use_compilation_cache(cfg.get("jax_cache"))
        out = cfg.out_dir or Path(__file__).resolve().parents[1] / "docs" / "gallery"
        run_gallery(OmegaConf.to_container(cfg, resolve=True), out)


if __name__ == "__main__":
    main()
