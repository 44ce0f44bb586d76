"""``imgcls``: the original specification's scripts as one command over the same Dagster assets.

``imgcls -h`` lists the commands; ``imgcls COMMAND -h`` (or ``imgcls help COMMAND``) a command's
flags, with each setting's type, default and description from ``core/settings.py``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from imgcls_pipeline.cli.flags import parse_flags
from imgcls_pipeline.cli.help import command_help, overview
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings_errors import did_you_mean

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
    "models": "models",
    "promote": "promote",
}
_HELP_FLAGS = ("-h", "--help")


def run(argv: Sequence[str]) -> int:
    if not argv or argv[0] in _HELP_FLAGS:
        print(overview(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, tokens = argv[0], list(argv[1:])
    if command == "help":
        if not tokens:
            print(overview())
            return 0
        command, tokens = tokens[0], [_HELP_FLAGS[0]]
    if command not in COMMAND_MODULES:
        hint = did_you_mean(command, list(COMMAND_MODULES))
        raise UserError(
            f"Unknown command '{command}'.{hint} Commands: {', '.join(COMMAND_MODULES)}; "
            "see `imgcls --help`."
        )
    if any(token in _HELP_FLAGS for token in tokens):
        print(command_help(command))
        return 0
    module = importlib.import_module(f"imgcls_pipeline.cli.{COMMAND_MODULES[command]}")
    return module.run(command, tokens)


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
