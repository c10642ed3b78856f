"""``vestis train`` and ``vestis demo``: the longer jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vestis.cli.options import JsonOpt, ModelOpt, QuietOpt
from vestis.cli.output import metrics_table, note, out, print_json


def train(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Training config (YAML), e.g. configs/vestis-mini.yaml.")
    ],
    out_dir: Annotated[str | None, typer.Option("--out", help="Run folder (overrides the config's).")] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Fine-tune this model (name or directory: vestis-mini, a transformers CLIP / "
            "Chinese-CLIP or an open_clip checkpoint) instead of training vestis-mini from scratch.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="Continue from the run's checkpoint.")] = True,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Override the number of epochs (of a config without stages).")
    ] = None,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after", min=1, help="End this run after that epoch, counted over all stages (resume later)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Override the config's seed (to measure across-seed noise).")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train vestis-mini or fine-tune a checkpoint (contrastive, multi-field); checkpoints every epoch, resumes."""
    from vestis.train.loop import TrainConfig
    from vestis.train.loop import train as run_training

    cfg = TrainConfig.from_yaml(config)
    if out_dir:
        cfg.out = out_dir
    if init:
        cfg.init = init
    if epochs:
        if cfg.stages is not None:
            from vestis.errors import InputError

            raise InputError(f"--epochs: {config} sets the epochs of each of its stages; change them there")
        cfg.epochs = epochs
    if seed is not None:
        cfg.seed = seed
    final = run_training(cfg, resume=resume, quiet=quiet, stop_after=stop_after, log=note)
    result = {"model": str(Path(cfg.out) / "model"), **final}
    if as_json:
        print_json(result)
        return
    numbers = [k for k, v in final.items() if isinstance(v, (int, float))]
    out.print(metrics_table(f"trained {result['model']}", final, numbers))


def demo(
    model: ModelOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the index and the HTML page go.")] = Path("build/demo"),
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Index a few hundred KAGL products, search them several ways, tag them, write an HTML page."""
    from vestis.cli.output import err
    from vestis.demo import run_demo

    summary = run_demo(model, out=out_dir, console=err if as_json else out, quiet=quiet)
    if as_json:
        print_json(summary)
