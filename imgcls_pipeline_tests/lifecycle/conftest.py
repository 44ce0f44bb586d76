from __future__ import annotations

from pathlib import Path

import pytest

from imgcls_pipeline_tests.lifecycle.runs import make_project, train_run, zeroed_run


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, splits folder) of a tiny project; tests copy it before changing it."""
    return make_project(tmp_path_factory.mktemp("lifecycle_project"))


@pytest.fixture(scope="session")
def good_run(project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, splits = project
    return train_run(tmp_path_factory.mktemp("good_run"), data, splits)


@pytest.fixture(scope="session")
def zeroed(good_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zeroed_run(good_run, tmp_path_factory.mktemp("zeroed_run"))
