"""``imgcls promote VERSION``: serve a registered model version by hand (rollback or forward).

The version's bundle is built for the current split tables unless a matching one exists, then
served through the same atomic switch as the gate's, and a "manual" row is added to
``models/decisions.csv``. No Dagster; torch only once the checks have passed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.lifecycle.registry import read_version
from imgcls_pipeline.core.locks import FolderLock

# The evaluation's HTML report and PNGs in the bundle, as `imgcls index` draws them (a few
# seconds on a small project).
REPORT_FIGURES = True


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    if len(line.positional) != 1:
        raise UserError(
            "Name one model version to serve, e.g. `imgcls promote v0002`; `imgcls models` "
            "lists them."
        )
    folders = Folders.from_env(**line.options)
    version = read_version(folders.models, line.positional[0])
    from imgcls_pipeline.cli.preflight import check_data_folder, check_split_tables
    from imgcls_pipeline.core.data.splitting import SPLITS

    check_split_tables(folders.splits, SPLITS)
    check_data_folder(folders.data)
    from imgcls_pipeline.cli.models import decision_text
    from imgcls_pipeline.core.lifecycle.gate import run_gate

    def log(text: str) -> None:
        print(text, file=sys.stderr)

    with FolderLock(folders.artifacts, "artifacts folder"):
        decision = run_gate(
            version,
            folders.artifacts,
            folders.models,
            folders.data,
            folders.splits,
            evaluation=line.config.evaluation,
            lifecycle=line.config.lifecycle,
            manual=True,
            image_cache=line.config.data.image_cache,
            progress=True,
            figures=REPORT_FIGURES,
            log=log,
        )
    print(decision_text(decision))
    print(f"{version.version} is served; `imgcls models` lists the versions.")
    return 0
