"""kill -9 at seeded random moments in `imgcls split`, training and `imgcls index`.

After every kill each output file is complete: byte for byte the version before the run or the
one an uninterrupted run writes (so it parses, loads, reads). The next run needs no clean-up and
leaves no temporary file behind, and training resumed across the kills writes the same metrics.csv
as a run never interrupted. The moments are drawn uniformly over an uninterrupted run's duration.

Each run is a fork of a process that imported the pipeline once (``crash_driver``), killed with
SIGKILL: the same code path as the command, without paying ~10 s of imports per kill.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imgcls_pipeline.core.locks import LOCK_FILE
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline_tests.core.training.test_train_script import REPO, script_args
from imgcls_pipeline_tests.core.training.tiny_training import make_tiny_splits, tiny_config
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout, write_photo

pytestmark = pytest.mark.slow

KILLS = 10
EPOCHS = 3  # warm-up, then two fine-tuning epochs: a resume crosses the phase change
SEED = 20261128
TIMING_COLUMNS = ["seconds", "images_per_second"]  # the only columns allowed to differ


class Driver:
    """The fork server of ``crash_driver``: one pipeline command per call, killed on request."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "children.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "DAGSTER_HOME" and not k.startswith("IMGCLS")
        }
        env["PYTHONPATH"] = str(REPO)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imgcls_pipeline_tests.crash_driver", str(self.log)],
            cwd=folder,  # no dagster.yaml here: each run gets a throwaway Dagster instance
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, entry: str, argv: list[str], kill_after: float | None = None) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"entry": entry, "argv": [str(a) for a in argv], "kill_after": kill_after}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if not answer["killed"]:
            assert answer["code"] == 0, self.log.read_text()[-3000:]
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    started = Driver(tmp_path_factory.mktemp("driver"))
    yield started
    started.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_splits(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def straight_training(driver, tiny, tmp_path_factory):
    """An uninterrupted training: its folder and how long it took."""
    folder = tmp_path_factory.mktemp("straight")
    answer = driver.run("train_script", script_args(tiny, folder, tiny_config(total_epochs=EPOCHS)))
    return folder / "checkpoints", answer["seconds"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every output file under ``folder`` by relative path (the lock file is no output)."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


def assert_old_or_new(folder: Path, old: dict[str, bytes], new: dict[str, bytes]) -> None:
    for name, content in snapshot(folder).items():
        if name.endswith(".tmp"):
            continue  # a killed writer's; the next run removes it (checked at the end)
        assert content in (old.get(name), new.get(name)), f"{name} is neither version"


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*.tmp")]


def kill_repeatedly(
    run: Callable[[float], dict], seconds: float, seed: int, after_each: Callable[[bool], None]
) -> None:
    """``run(moment)`` until KILLS runs were killed, each at a moment drawn uniformly within
    ``seconds``; ``after_each(killed)`` checks the files after every run (a run can finish first)."""
    rng = random.Random(seed)
    kills = 0
    for _ in range(4 * KILLS):
        killed = run(rng.uniform(0, seconds))["killed"]
        kills += killed
        after_each(killed)
        if kills == KILLS:
            return
    pytest.fail(f"only {kills} of {4 * KILLS} runs were killed before they finished")


def test_split_killed_anywhere_keeps_every_file_old_or_new(driver, tmp_path):
    data = make_photo_folder(tmp_path / "data", uniform_layout(3, 8, 2))

    def split(root: Path, kill_after: float | None = None) -> dict:
        argv = ["split", "--data_dir", data, "--output_dir", root / "splits"]
        argv += ["--artifacts_dir", root / "artifacts", "--min_image_size=32"]
        return driver.run("imgcls", argv, kill_after)

    split(tmp_path / "old")
    old = snapshot(tmp_path / "old")
    for c in range(3):  # new photos: the new version differs in every table
        write_photo(data / f"class_{c}" / f"c{c}new_1.jpg", seed=c)
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    seconds = split(tmp_path / "new")["seconds"]
    new = snapshot(tmp_path / "new")
    assert new != old

    shutil.copytree(tmp_path / "old", tmp_path / "crash")
    kill_repeatedly(
        lambda moment: split(tmp_path / "crash", kill_after=moment),
        seconds,
        SEED,
        lambda _: assert_old_or_new(tmp_path / "crash", old, new),
    )
    split(tmp_path / "crash")
    assert snapshot(tmp_path / "crash") == new
    assert no_temp_files(tmp_path / "crash")


def metrics_rows(checkpoint_dir: Path) -> list[dict]:
    frame = ckpt.read_metrics(checkpoint_dir)
    return frame.drop(columns=TIMING_COLUMNS).to_dict("records") if not frame.empty else []


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in history]


def test_training_killed_anywhere_resumes_to_the_uninterrupted_history(
    driver, tiny, straight_training, tmp_path
):
    straight, seconds = straight_training
    expected = metrics_rows(straight)
    assert len(expected) == EPOCHS
    runs = iter(range(100))
    folder = tmp_path / f"crash{next(runs)}"

    def train(kill_after: float | None = None) -> dict:
        return driver.run(
            "train_script", script_args(tiny, folder, tiny_config(total_epochs=EPOCHS)), kill_after
        )

    def check(killed: bool) -> None:
        nonlocal folder
        checkpoints = folder / "checkpoints"
        if not killed:  # resumed across kills to the end: the history of a run never stopped
            assert metrics_rows(checkpoints) == expected
            assert no_temp_files(checkpoints)
            folder = tmp_path / f"crash{next(runs)}"  # and start another one
            return
        if not (checkpoints / ckpt.LATEST).exists():
            assert not (checkpoints / ckpt.METRICS).exists()
            return
        latest = ckpt.read_checkpoint(checkpoints / ckpt.LATEST)
        ckpt.read_checkpoint(checkpoints / ckpt.BEST)  # written first: never missing or partial
        epoch = latest["epoch"]
        assert without_timing(latest["history"]) == expected[:epoch]
        # metrics.csv is rewritten after latest_model.pt: at most one epoch behind it
        assert metrics_rows(checkpoints) in (expected[:epoch], expected[: epoch - 1])

    kill_repeatedly(train, seconds, SEED + 1, check)
    train()
    check(killed=False)


def test_index_killed_anywhere_keeps_a_consistent_served_bundle(
    driver, tiny, straight_training, tmp_path
):
    """`imgcls index` with a new flip_tta builds a new bundle for the served model and switches
    it in: killed anywhere, the served bundle is the old one untouched or the complete new one."""
    from imgcls_pipeline.core.lifecycle.bundles import check_matches, served_bundle
    from imgcls_pipeline.core.lifecycle.registry import read_version, register_version
    from imgcls_pipeline.core.search.index import load_index

    data, splits = tiny
    checkpoints, _ = straight_training
    register_version(checkpoints, tmp_path / "old" / "models", splits)

    def folders(root: Path) -> list:
        return ["--data_dir", data, "--splits_dir", splits, "--artifacts_dir", root / "artifacts"]

    def index(root: Path, kill_after: float | None = None) -> dict:
        argv = ["index", *folders(root), "--models_dir", root / "models", "--flip_tta=true"]
        return driver.run("imgcls", argv, kill_after)

    promote = ["promote", "v0001", *folders(tmp_path / "old")]
    driver.run("imgcls", [*promote, "--models_dir", tmp_path / "old" / "models"])
    old = served_bundle(tmp_path / "old" / "artifacts")
    assert old is not None and not old.flip_tta
    old_files = snapshot(old.folder)
    shutil.copytree(tmp_path / "old", tmp_path / "new", symlinks=True)
    seconds = index(tmp_path / "new")["seconds"]
    new = served_bundle(tmp_path / "new" / "artifacts")
    assert new is not None and new.flip_tta and new.bundle_id != old.bundle_id
    arrays = {s: (new.folder / "embeddings" / f"{s}.npy").read_bytes() for s in ("train", "val")}

    crash = tmp_path / "crash"
    shutil.copytree(tmp_path / "old", crash, symlinks=True)
    artifacts = crash / "artifacts"

    def check(_: bool) -> None:
        bundle = served_bundle(artifacts)
        assert bundle is not None
        if bundle.bundle_id == old.bundle_id:
            assert snapshot(bundle.folder) == old_files
        else:
            assert bundle.flip_tta
            for split, content in arrays.items():
                assert (bundle.folder / "embeddings" / f"{split}.npy").read_bytes() == content
        index_, gallery = load_index(bundle.part("index"))
        assert index_.ntotal == len(gallery) > 0 and index_.d == bundle.dimension
        check_matches(bundle, read_version(crash / "models", bundle.model_version).weights)

    kill_repeatedly(lambda moment: index(crash, kill_after=moment), seconds, SEED + 2, check)
    index(crash)  # needs no clean-up by hand, and leaves none
    served = served_bundle(artifacts)
    assert served is not None and served.flip_tta
    kept = {folder.name for folder in (artifacts / "bundles").iterdir()}
    assert served.bundle_id in kept and len(kept) <= 2  # the served one and the one before it
    assert no_temp_files(artifacts)


def promote_project(root: Path, tiny, checkpoints: Path) -> tuple[Path, Path]:
    """root/models with v0001 (the run) and v0002 (the same weights saved again: other bytes,
    other bundle, the same answers), so that predict answers alike whichever is served."""
    from imgcls_pipeline.core.lifecycle.registry import register_version

    _, splits = tiny
    models = root / "models"
    register_version(checkpoints, models, splits)
    resaved = root / "resaved"
    resaved.mkdir()
    checkpoint = ckpt.read_checkpoint(checkpoints / ckpt.BEST)
    checkpoint["epoch"] = checkpoint["epoch"] + 100
    ckpt.save_checkpoint(resaved / ckpt.BEST, checkpoint)
    register_version(resaved, models, splits)
    return models, root / "artifacts"


def test_promote_killed_anywhere_serves_a_complete_bundle_that_predicts_right(
    driver, tiny, straight_training, tmp_path
):
    from imgcls_pipeline.core.lifecycle.bundles import served_bundle
    from imgcls_pipeline.core.search.index import load_index

    data, splits = tiny
    checkpoints, _ = straight_training
    pristine = tmp_path / "pristine"
    promote_project(pristine, tiny, checkpoints)
    photos = {data / f"class_{c}" / f"c{c}id002_1.jpg": f"class_{c}" for c in range(3)}  # val

    def folders(root: Path) -> list:
        return ["--artifacts_dir", root / "artifacts", "--models_dir", root / "models"]

    def promote(root: Path, version: str, kill_after: float | None = None) -> dict:
        argv = ["promote", version, "--data_dir", data, "--splits_dir", splits, *folders(root)]
        return driver.run("imgcls", argv, kill_after)

    def predict_answers(root: Path) -> dict[str, str]:
        start = driver.log.stat().st_size
        driver.run("imgcls", ["predict", *folders(root), *photos])  # exit 0 asserted there
        out = driver.log.read_bytes()[start:].decode()
        assert "Traceback" not in out and "error" not in out, out
        return {
            line.split(": ")[0]: line.split(": ")[1].split()[0]
            for line in out.splitlines()
            if not line.startswith(" ") and ": " in line
        }

    expected = {str(path): name for path, name in photos.items()}
    promote(pristine, "v0001")
    assert predict_answers(pristine) == expected
    shutil.copytree(pristine, tmp_path / "straight", symlinks=True)
    seconds = promote(tmp_path / "straight", "v0002")["seconds"]
    assert served_bundle(tmp_path / "straight" / "artifacts").model_version == "v0002"
    crash = tmp_path / "crash"

    def killed_promote(moment: float) -> dict:
        shutil.rmtree(crash, ignore_errors=True)
        shutil.copytree(pristine, crash, symlinks=True)
        return promote(crash, "v0002", kill_after=moment)

    def check(_: bool) -> None:
        bundle = served_bundle(crash / "artifacts")
        assert bundle is not None and bundle.model_version in ("v0001", "v0002")
        index, gallery = load_index(bundle.part("index"))
        assert index.ntotal == len(gallery) > 0 and index.d == bundle.dimension
        assert predict_answers(crash) == expected

    kill_repeatedly(killed_promote, seconds, SEED + 3, check)
    promote(crash, "v0002")  # the next run needs no clean-up by hand, and leaves none
    assert served_bundle(crash / "artifacts").model_version == "v0002"
    assert no_temp_files(crash / "artifacts") and no_temp_files(crash / "models")
