"""The README's first steps, word for word: `imgcls demo`, then the one command it prints, which
opens a UI where "Materialize all" works on the first click (driven in a real browser)."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from imgcls_pipeline_tests.servers import free_port, restore_signals

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `.ci/run` installs it when missing
# Flags known to work for a headless Chromium running as root on these machines.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where to copy the screenshots for CI to keep (they are always under the test's tmp_path).
ARTIFACTS_ENV = "IMGCLS_TEST_ARTIFACTS"
# Two epochs at 32 px instead of twelve at 64: the same path through every asset, in CI time. The
# demo writes them to its imgcls.yaml, so the UI's "Materialize all" is as quick.
DEMO_FLAGS = ["--total_epochs", "2", "--image_size", "32"]


def _clean_env() -> dict[str, str]:
    """The environment of a new shell: no DAGSTER_HOME or IMGCLS_*_DIR of the test run."""
    return {
        k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("IMGCLS_")
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`imgcls demo` run once for the module, as a user runs it: (its folder, what it printed)."""
    root = tmp_path_factory.mktemp("newcomer") / "demo"
    imgcls = Path(sys.executable).with_name("imgcls")
    done = subprocess.run(
        [str(imgcls), "demo", "--dir", str(root), *DEMO_FLAGS],
        cwd=PROJECT_ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root, done.stdout


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_into_its_own_project_folder(demo: tuple[Path, str]) -> None:
    root, out = demo
    for split in ("train", "val", "test"):
        assert len(pd.read_csv(root / "splits" / f"{split}.csv")) > 0
    history = pd.read_csv(root / "checkpoints" / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert (root / "checkpoints" / "best_model.pt").is_file()
    report = json.loads((root / "artifacts" / "evaluation" / "val.json").read_text())
    recall = report["recall@1"]
    assert 0.0 <= recall <= 1.0
    assert f"| recall@1 | {recall:.4f} |" in out  # the printed table is the report's number

    # The demo's settings, for every door: 96 px example photos need min_image_size ≤ 96.
    written = yaml.safe_load((root / "imgcls.yaml").read_text())
    assert written["data_dir"] == "data"
    assert written["backbone"] == "test_efficientnet"
    assert written["min_image_size"] <= 96
    assert (written["total_epochs"], written["image_size"]) == (2, 32)
    # Its runs are in its own folder, which the printed command opens.
    assert (root / "dagster.yaml").is_file()
    with dg.DagsterInstance.from_config(str(root)) as instance:
        assert len(instance.get_runs()) == 1
    assert out.strip().splitlines()[-1].strip() == (
        f"DAGSTER_HOME={root} uv run dagster dev -m imgcls_pipeline.definitions"
    )


@contextlib.contextmanager
def _ui(command: str, log: Path) -> Iterator[str]:
    """The printed command, in a shell in the repository, on a free port; its URL."""
    port = free_port()
    process = subprocess.Popen(
        ["bash", "-c", f"{command} -h 127.0.0.1 -p {port}"],
        cwd=PROJECT_ROOT,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115
        start_new_session=True,
        preexec_fn=restore_signals,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the UI did not answer in 180 s"
                time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # code servers and the daemon left behind
        process.wait(timeout=10)


def _wait_for_new_run(root: Path, known: set[str], timeout: float = 600) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(root)) as instance:
        while time.monotonic() < deadline:
            new = [run for run in instance.get_runs() if run.run_id not in known]
            if new and new[0].is_finished:
                return new[0]
            time.sleep(2)
    raise TimeoutError("the run launched from the UI did not finish")


def _keep(screenshot: Path) -> None:
    folder = os.environ.get(ARTIFACTS_ENV)
    if folder and screenshot.exists():
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(folder) / screenshot.name)


@pytest.mark.slow
def test_materialize_all_in_the_ui_works_on_the_first_click(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does it)")
    from playwright.sync_api import expect, sync_playwright

    root, out = demo
    command = out.strip().splitlines()[-1].strip()
    assert shlex.split(command)[:3] == [f"DAGSTER_HOME={root}", "uv", "run"]
    # A fresh instance opens with a "Join the Dagster community" dialog over every button.
    (root / ".nux").mkdir(exist_ok=True)
    (root / ".nux" / "nux.yaml").write_text("seen: 1\n")
    with dg.DagsterInstance.from_config(str(root)) as instance:
        demo_runs = {run.run_id for run in instance.get_runs()}
    screenshots = [tmp_path / "ui_evaluation.png", tmp_path / "ui_confusion_matrix.png"]

    with _ui(command, tmp_path / "dagster_dev.log") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/runs")  # the demo's run is there
            expect(page.get_by_text(next(iter(demo_runs))[:8]).first).to_be_visible(timeout=60_000)

            page.goto(f"{url}/asset-groups")
            page.get_by_role("button", name="Materialize all").click(timeout=60_000)
            run = _wait_for_new_run(root, demo_runs)
            assert run.status == dg.DagsterRunStatus.SUCCESS, f"run {run.run_id}: {run.status}"
            assert run.run_config == {}  # the settings came from the demo's imgcls.yaml

            report = json.loads((root / "artifacts" / "evaluation" / "val.json").read_text())
            page.goto(f"{url}/assets/evaluation")
            metrics = page.get_by_role("row").filter(has_text="recall@1").first
            expect(metrics).to_be_visible(timeout=60_000)
            shown = page.locator("body").inner_text()
            recall = report["recall@1"]
            assert f"{recall:.2f}" in shown or str(recall)[:4] in shown
            confusion = page.get_by_role("row").filter(has_text="confusion").first
            expect(confusion).to_be_visible()
            page.screenshot(path=str(screenshots[0]), full_page=True)
            behind_a_link = confusion.get_by_text("Show Markdown")
            if behind_a_link.count():
                behind_a_link.first.click()
            image = page.locator('img[alt*="confusion matrix"]').first
            expect(image).to_be_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")
        finally:
            page.screenshot(path=str(screenshots[1]), full_page=True)
            browser.close()
            for screenshot in screenshots:
                _keep(screenshot)


def test_readme_first_steps_are_the_commands_the_demo_prints() -> None:
    """The README's first block is what this module runs: the demo, the UI command the demo
    prints (for the default ./demo folder, as $PWD/demo), and the tests."""
    from imgcls_pipeline.cli.demo import UI_COMMAND

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```bash", 2)[2].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in first_block.strip().splitlines()]
    assert commands == [
        "uv run imgcls demo",
        f"DAGSTER_HOME=$PWD/demo {UI_COMMAND}",
        "uv run pytest",
    ]
