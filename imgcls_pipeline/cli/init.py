"""``imgcls init [DIR]``: a new project folder's ``imgcls.yaml`` (and ``dagster.yaml`` when missing).

The settings file lists every setting with its description and default, taken from the fields
of ``core/settings.py``, commented out: a user uncomments the lines to change. ``imgcls demo``
writes its own settings with the same layout.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from imgcls_pipeline.core.atomic import write_text_atomic
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.project_settings import PROJECT_FILE, project_folder
from imgcls_pipeline.core.settings import SECTIONS, PipelineConfig, setting_fields
from imgcls_pipeline.core.settings_help import GROUP_TITLES

# The project's own dagster.yaml: run history kept in the folder, no telemetry, one training at a
# time in the "gpu" pool (see the comments in the repository's dagster.yaml).
DAGSTER_YAML = """\
# Dagster instance settings; use with DAGSTER_HOME set to this folder.
telemetry:
  enabled: false
concurrency:
  pools:
    granularity: op
    default_limit: 1
"""

FOLDERS = {
    "data_dir": ("data", "Photos, one folder per class (data/<class>/<id>_<n>.jpg)."),
    "splits_dir": ("splits", "train.csv, val.csv, test.csv and excluded.csv."),
    "checkpoint_dir": ("checkpoints", "best_model.pt, latest_model.pt and metrics.csv."),
    "artifacts_dir": ("artifacts", "Manifest, embeddings, Faiss index and evaluation reports."),
    "models_dir": (
        "models",
        "Model versions (v0001, v0002, …), each immutable, and decisions.csv.",
    ),
}


NEW_PROJECT_HEADER = f"""\
# Settings of this imgcls project, read by every door: `imgcls` commands, `dagster dev` (the
# launchpad's defaults, so "Materialize all" uses them; "Reload" picks up an edit) and
# `dagster asset materialize`. The file is found as $DAGSTER_HOME/{PROJECT_FILE}, or
# ./{PROJECT_FILE} when DAGSTER_HOME is not set.
# Precedence: a flag or the UI's run config > `imgcls --settings FILE` > this file > defaults
# (for folders, an IMGCLS_DATA_DIR … environment variable comes just before this file).
# Lines starting with # are the defaults of the original specification; uncomment to change."""


def run(command: str, tokens: Sequence[str]) -> int:
    extra = [token for token in tokens if token.startswith("-")] or tokens[1:]
    if extra:
        raise UserError(f"Unexpected argument '{extra[0]}': `imgcls init [DIR]` takes one folder.")
    folder = Path(tokens[0]) if tokens else project_folder()
    path = folder / PROJECT_FILE
    if path.exists():
        raise UserError(f"{path} already exists; edit it, or move it away to write a fresh one.")
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, settings_file_text({}, header=NEW_PROJECT_HEADER))
    print(f"Wrote {path}: every setting with its default, commented out; uncomment to change.")
    if write_dagster_yaml(folder):
        print(f"Wrote {folder / 'dagster.yaml'}: run history kept in {folder}.")
    return 0


def write_dagster_yaml(folder: Path) -> bool:
    """Write ``folder/dagster.yaml`` unless there is one; whether it was written."""
    path = folder / "dagster.yaml"
    if path.exists():
        return False
    write_text_atomic(path, DAGSTER_YAML)
    return True


def settings_file_text(
    values: Mapping[str, Any], *, header: str, folders: Mapping[str, str] | None = None
) -> str:
    """A settings file: the folders, then every setting under its group with its
    description; those in ``values`` are set, the others are shown commented with their default."""
    lines = [header, "", "# --- Folders (a relative path is relative to this file's folder) ---"]
    for name, (default, description) in FOLDERS.items():
        lines += [f"# {description}", f"{name}: {(folders or {}).get(name, default)}"]
    defaults = PipelineConfig().flat()
    fields = setting_fields()
    for section in (None, *SECTIONS):
        lines += ["", f"# --- {GROUP_TITLES[section]} ---"]
        for name, (home, field) in fields.items():
            if home != section:
                continue
            lines += [f"# {line}" for line in textwrap.wrap(field.description or "", 98)]
            if name in values:
                lines.append(f"{name}: {_yaml(values[name])}   # default: {_yaml(defaults[name])}")
            else:
                lines.append(f"# {name}: {_yaml(defaults[name])}")
    return "\n".join(lines) + "\n"


def _yaml(value: Any) -> str:
    """One value as YAML on one line (``[1, 5]``, ``null``, ``0.0001``)."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=1_000).removesuffix("\n...\n").strip()
    )
