"""``imgcls``: the original specification's scripts as one command over the same Dagster assets.

    imgcls demo                                   # built-in example, whole pipeline, on the CPU
    imgcls split    --data_dir ./data --output_dir ./splits
    imgcls train    --data_dir ./data --splits_dir ./splits [--fresh]
    imgcls index    --data_dir ./data --splits_dir ./splits   # embeddings + Faiss index + val
    imgcls evaluate --checkpoint ./checkpoints/best_model.pt --split val|test
    imgcls predict  --checkpoint ./checkpoints/best_model.pt PHOTO_OR_FOLDER...

Every setting of ``core/settings.py`` is also a flag: ``--seed 7``, ``--min_image_size=128``,
``--class_names a,b``, ``--use_bf16=false``; ``--settings FILE`` reads them from a YAML file
(flags win over it). Runs are recorded in the Dagster instance of
``DAGSTER_HOME`` (or of the current folder when it holds ``dagster.yaml``), so ``dagster dev``
shows what the command materialized.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from imgcls_pipeline.cli.flags import parse_flags
from imgcls_pipeline.core.errors import UserError

__all__ = ["main", "parse_flags"]

# Each command's module, imported only when that command runs: evaluate and predict never load
# Dagster, and no command pays for another's imports.
COMMAND_MODULES = {
    "split": "assets",
    "train": "assets",
    "index": "assets",
    "pipeline": "assets",
    "demo": "demo",
    "init": "init",
    "evaluate": "evaluate",
    "predict": "predict",
}


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="imgcls", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(COMMAND_MODULES))
    parser.add_argument("flags", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"imgcls_pipeline.cli.{COMMAND_MODULES[args.command]}")
    return module.run(args.command, args.flags)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is kept (training resumes from latest_model.pt); "
            "run the same command again to carry on.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
