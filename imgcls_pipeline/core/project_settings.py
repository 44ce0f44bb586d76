"""The project's settings file, ``imgcls.yaml``: one place for folders and settings, read by every door.

It lives in the project folder, beside ``dagster.yaml``: ``$DAGSTER_HOME`` when that is set (the
folder whose run history the UI shows), otherwise the current folder. The Dagster code location
takes its launchpad defaults and folders from it when it loads (so "Reload" in the UI picks up an
edit), and ``imgcls`` reads it under its ``--settings FILE`` and flags. A project without the file
runs with the specification's defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.settings_sources import SettingsFile, read_settings_file, resolve_settings

PROJECT_FILE = "imgcls.yaml"


def project_folder() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) if home else Path.cwd()


def project_settings_path() -> Path:
    return project_folder() / PROJECT_FILE


def read_project_settings() -> SettingsFile:
    """The project's ``imgcls.yaml`` (nothing set when there is none), valid on its own: the UI
    uses it without any flag to complete it, so a rule between settings (the split ratios add up
    to 1) is checked here and reported with the file's name."""
    path = project_settings_path()
    if not path.is_file():
        return SettingsFile()
    project = read_settings_file(path)
    try:
        PipelineConfig.from_flat(project.settings)
    except UserError as error:
        raise UserError(f"Settings file {path}: {error}") from None
    return project


def command_line_settings(
    settings_file: str | None,
    flags: Mapping[str, str],
    *,
    base: Mapping[str, Any] | None = None,
    project: bool = True,
) -> tuple[PipelineConfig, dict[str, str]]:
    """The settings of one command, and the folders its ``--settings FILE`` names: defaults <
    ``base`` (the command's own) < the project's ``imgcls.yaml`` (unless ``project`` is false) <
    ``--settings FILE`` < flags. The project file's folders are read by ``Folders.from_env``."""
    files = [read_project_settings()] if project else []
    if settings_file is not None:
        files.append(read_settings_file(settings_file))
    config = resolve_settings(base=base, files=files, flags=flags)
    return config, files[-1].folders if settings_file is not None else {}
