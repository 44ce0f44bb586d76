"""Run ``dagster asset materialize`` on a project folder made in tmp_path, as a user would."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "data_dir": "data",
    "splits_dir": "splits",
    "checkpoint_dir": "checkpoints",
    "artifacts_dir": "artifacts",
    "models_dir": "models",
}


def folder_flags(root: Path, *names: str) -> list[str]:
    """``--data_dir=root/data`` … for the named folder flags (all four when none is named)."""
    return [f"--{name}={root / FOLDERS[name]}" for name in (names or FOLDERS)]


def materialize(root: Path, selection: str, run_yaml: str) -> subprocess.CompletedProcess:
    """``dagster asset materialize`` in ``root`` (DAGSTER_HOME=root with the project's
    dagster.yaml, photos in root/data, every other folder under root)."""
    shutil.copy(PROJECT_ROOT / "dagster.yaml", root / "dagster.yaml")
    (root / "run.yaml").write_text(run_yaml)
    env = os.environ | {"DAGSTER_HOME": str(root)}
    env |= {f"IMGCLS_{name.upper()}": str(root / folder) for name, folder in FOLDERS.items()}
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "imgcls_pipeline.definitions",
        "--select",
        selection,
        "-c",
        "run.yaml",
    ]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
