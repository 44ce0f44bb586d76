"""``imgcls demo``: the whole pipeline on the built-in example, on the CPU, in a few minutes.

The demo's folder (``--dir``, default ``./demo``) is a project of its own: the example photos in
``data/``, the demo's settings in ``imgcls.yaml`` (a small backbone, small images), a
``dagster.yaml``, and the run history (it is the demo's ``DAGSTER_HOME``). It materializes every
asset — manifest, ID groups, splits, training, embeddings, index, evaluation — prints Recall@1/@5
on val, and ends with the one command that opens the UI on that folder, where "Materialize all"
runs the demo again with the same settings.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.cli.init import FOLDERS, settings_file_text, write_dagster_yaml
from imgcls_pipeline.core.atomic import write_text_atomic
from imgcls_pipeline.core.data.example_data import make_example_dataset
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.project_settings import PROJECT_FILE
from imgcls_pipeline.core.settings import PipelineConfig

# Small enough for two CPU cores: a tiny EfficientNet from scratch on 64 px photos of 4 classes
# (the example photos are 96 px, so min_image_size must stay at or below 96).
# The few-classes advice of the specification applies (s=48 → 30 for a fresh model, m=0.3).
EXAMPLE_IDS_PER_CLASS = 20

DEMO_SETTINGS: dict[str, Any] = {
    "backbone": "test_efficientnet",
    "pretrained": False,
    "image_size": 64,
    "min_image_size": 64,
    "embedding_dim": 128,
    "arcface_s": 30.0,
    "arcface_m_finetune": 0.3,
    "warmup_epochs": 1,
    "total_epochs": 12,
    "samples_per_class": 8,
    "learning_rate": 0.002,
    "early_stopping_patience": 6,
    "num_workers": 0,
    "top_k": 10,
    "fresh": True,
}


HEADER = """\
# Settings of the demo project, written by `imgcls demo` (running it again rewrites this file).
# Every door reads them: the demo itself, and `dagster dev` with DAGSTER_HOME set to this folder
# ("Materialize all" runs the demo again with them). Lines starting with # are the defaults."""
UI_COMMAND = "uv run dagster dev -m imgcls_pipeline.definitions"


def run(command: str, tokens: Sequence[str]) -> int:
    # The demo is a project of its own: the settings of the folder it is run from do not apply.
    line = read_command_line(tokens, command, defaults=DEMO_SETTINGS, project=False)
    if line.positional:
        raise UserError(
            f"Unexpected argument '{line.positional[0]}': try `imgcls demo --dir ./demo`."
        )
    root = Path(line.options.get("dir", "demo")).expanduser().resolve()
    write_demo_project(root, line.config)
    # Its runs are recorded in its own folder, where the printed command's UI looks.
    os.environ["DAGSTER_HOME"] = str(root)
    # Imported once DAGSTER_HOME is the demo's folder: the definitions read that folder's
    # imgcls.yaml as they load, never the one of the folder the demo was started from.
    from imgcls_pipeline.cli.assets import materialize
    from imgcls_pipeline.cli.printing import print_evaluation

    folders = {name: str(root / folder) for name, (folder, _) in FOLDERS.items()}
    print(f"Writing the example photos to {folders['data_dir']}/ …")
    make_example_dataset(Path(folders["data_dir"]), ids_per_class=EXAMPLE_IDS_PER_CLASS)
    print("Running the pipeline: split → train → embed → index → evaluate (a few minutes) …")
    paths, _ = materialize("demo", line.config, folders)
    print_evaluation(paths, line.config.evaluation.eval_splits)
    print(
        f"\nThe demo's settings are in {root / PROJECT_FILE} and its runs in {root}. "
        "Open the UI on them (http://127.0.0.1:3000, then Lineage → Materialize all) with:\n"
        f"  {ui_command(root)}"
    )
    return 0


def ui_command(root: Path) -> str:
    return f"DAGSTER_HOME={shlex.quote(str(root))} {UI_COMMAND}"


def write_demo_project(root: Path, config: PipelineConfig) -> None:
    """``root/imgcls.yaml`` with every setting that differs from the defaults, and a
    ``dagster.yaml`` unless the folder has one; a settings file the demo did not write is kept."""
    path = root / PROJECT_FILE
    if path.exists() and not path.read_text(encoding="utf-8").startswith(HEADER):
        raise UserError(
            f"{path} exists and was not written by `imgcls demo`; "
            "run the demo in another folder with --dir."
        )
    root.mkdir(parents=True, exist_ok=True)
    defaults = PipelineConfig().flat()
    changed = {name: value for name, value in config.flat().items() if value != defaults[name]}
    write_text_atomic(path, settings_file_text(changed, header=HEADER))
    write_dagster_yaml(root)
