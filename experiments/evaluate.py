"""Evaluate defocus maps on CUHK (blur detection), RTF and the synthetic scene (sigma MAE).

    python experiments/evaluate.py                                 # every data set found
    python experiments/evaluate.py 'datasets=[cuhk]' cuhk.root=/data/CUHK
    python experiments/evaluate.py model=caffe:/path/DHDE_model.caffemodel loader=direct

Writes report.md, precision_recall.png, results.json and panels/<dataset>/*.png into Hydra's
output directory; dhde is compared with a Laplacian-energy baseline. Logic:
dhde/evaluation/run.py.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from dhde.evaluation.report import markdown_table
    from dhde.evaluation.run import run_evaluation, target_lines
    from dhde.cli.common import check_evaluate_config, cli_errors, use_compilation_cache

    with cli_errors():  # a bad config value or a full disk: one line naming it
        use_compilation_cache(cfg.get("jax_cache"))
        out = HydraConfig.get().runtime.output_dir
        config = OmegaConf.to_container(cfg, resolve=True)
        check_evaluate_config(config)  # every key, before any data set is loaded
        results = run_evaluation(config, out)
    print(markdown_table(results))
    print("\n".join(target_lines(results)))
    print(f"report: {os.path.join(out, 'report.md')}")


if __name__ == "__main__":
    main()
