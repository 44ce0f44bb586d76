import os
import tempfile
from collections.abc import Iterator

import pytest

# The Dagster definitions read the project's imgcls.yaml ($DAGSTER_HOME, else the current folder)
# when they are imported, which happens while tests are collected: collect in an empty project,
# so that a developer's own settings never change the defaults the tests check.
os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="imgcls_tests_home_")


@pytest.fixture(autouse=True)
def isolated_working_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Each test runs in its own empty folder with no pipeline or Dagster environment set, so
    default folders (./data, ./artifacts, a DAGSTER_HOME picked up by `imgcls`) never land in
    the repository, and nothing one test sets leaks into the next."""
    saved = dict(os.environ)
    for name in (
        "DAGSTER_HOME",
        "IMGCLS_DATA_DIR",
        "IMGCLS_SPLITS_DIR",
        "IMGCLS_CHECKPOINT_DIR",
        "IMGCLS_ARTIFACTS_DIR",
        "IMGCLS_MODELS_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.environ.clear()
    os.environ.update(saved)
