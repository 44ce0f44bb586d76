import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from dagster_pipes import encode_param
from PIL import Image

from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training import loop
from imgcls_pipeline.core.training.model import load_embedding_model
from imgcls_pipeline_tests.core.training.tiny_training import (
    EQUIVALENCE_CONFIG,
    WEIGHT_TOLERANCE,
    cpu_hardware,
    largest_weight_difference,
    make_tiny_splits,
    same_images_every_run,
    tiny_config,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_splits(tmp_path_factory.mktemp("tiny"))


def script_args(tiny, folder: Path, config) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "hardware.json").write_text(json.dumps(cpu_hardware().to_dict()))
    data_dir, splits_dir = tiny
    return [
        "--config-json", str(folder / "config.json"),
        "--hardware-json", str(folder / "hardware.json"),
        "--data-dir", str(data_dir),
        "--splits-dir", str(splits_dir),
        "--checkpoint-dir", str(folder / "checkpoints"),
    ]  # fmt: skip


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "imgcls_pipeline.train_script", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def epochs_in_metrics(checkpoint_dir: Path) -> list[int]:
    lines = (checkpoint_dir / ckpt.METRICS).read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


@pytest.mark.slow
def test_dagster_pipes_messages(tiny, tmp_path):
    messages = tmp_path / "messages.jsonl"
    context = {
        "asset_keys": ["trained_checkpoint"],
        "code_version_by_asset_key": None,
        "provenance_by_asset_key": None,
        "partition_key": None,
        "partition_key_range": None,
        "partition_time_window": None,
        "run_id": "test-run",
        "job_name": None,
        "retry_number": 0,
        "extras": {},
    }
    env = {
        "DAGSTER_PIPES_CONTEXT": encode_param({"data": context}),
        "DAGSTER_PIPES_MESSAGES": encode_param({"path": str(messages)}),
    }
    code, _, err = finish(start(script_args(tiny, tmp_path, tiny_config()), env))
    assert code == 0, err
    sent = [json.loads(line) for line in messages.read_text().splitlines()]
    methods = [m["method"] for m in sent]
    assert methods[0] == "opened" and methods[-1] == "closed"
    assert sent[-1]["params"] in (None, {}) or not sent[-1]["params"].get("exception")
    assert "log" in methods
    rows = [m["params"]["payload"] for m in sent if m["method"] == "report_custom_message"]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert {"phase", "margin", "lr", "train_loss", "val_recall@1", "val_recall@5"} <= set(rows[0])
    (materialization,) = [m for m in sent if m["method"] == "report_asset_materialization"]
    metadata = materialization["params"]["metadata"]
    assert metadata["last_epoch"]["raw_value"] == 2
    assert metadata["final_val_recall@1"]["raw_value"] == rows[-1]["val_recall@1"]
    assert metadata["hardware"] == {"raw_value": cpu_hardware().to_dict(), "type": "json"}
    # The files to look at, beside the checkpoints.
    checkpoints = tmp_path / "checkpoints"
    results = pd.read_csv(checkpoints / "results.csv")
    assert results["epoch"].tolist() == [1, 2]
    assert {"train_loss", "val_recall@1", "val_recall@5", "lr", "margin", "seconds"} <= set(
        results.columns
    )
    assert results["val_recall@1"].tolist() == [row["val_recall@1"] for row in rows]
    for name in ("training_curve.png", "confusion_matrix.png", "worst_queries.png"):
        with Image.open(checkpoints / name) as image:
            assert image.format == "PNG" and min(image.size) > 100, name
    logged = [m["params"]["message"] for m in sent if m["method"] == "log"]
    assert any(line.startswith("Results in ") for line in logged)


def test_a_figure_that_cannot_be_drawn_is_logged_not_raised():
    from imgcls_pipeline.train_script import _unless_it_fails

    lines: list[str] = []

    def broken() -> None:
        raise OSError("disk full\nmore detail")

    _unless_it_fails(lines.append, "the training curve", broken)
    assert lines == ["Could not write the training curve: OSError: disk full"]


@pytest.mark.slow
def test_user_error_is_one_line_and_exit_code_1(tiny, tmp_path):
    args = script_args(tiny, tmp_path, tiny_config())
    (tmp_path / "config.json").write_text(json.dumps({"model": {"backbone_name": "x"}}))
    code, _, err = finish(start(args))
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: Unknown setting 'backbone_name'")


@pytest.mark.slow
def test_sigterm_stops_cleanly_after_a_completed_epoch(tiny, tmp_path):
    args = script_args(tiny, tmp_path, tiny_config(total_epochs=500))
    process = start(args)
    wait_for(tmp_path / "checkpoints" / ckpt.LATEST, process)
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process, timeout=60)
    assert code == 0, err
    assert "SIGTERM received" in out and "Stopped on request" in out
    saved = ckpt.read_checkpoint(tmp_path / "checkpoints" / ckpt.LATEST)
    assert 1 <= saved["epoch"] < 500
    assert epochs_in_metrics(tmp_path / "checkpoints") == list(range(1, saved["epoch"] + 1))
    # The curve follows every epoch; the best model's figures wait for a training that ended.
    assert (tmp_path / "checkpoints" / "training_curve.png").is_file()
    assert not (tmp_path / "checkpoints" / "confusion_matrix.png").exists()


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_the_last_checkpoint(tiny, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    process = start(script_args(tiny, tmp_path, tiny_config(total_epochs=500)))
    wait_for(checkpoints / ckpt.LATEST, process)
    process.kill()
    process.wait()
    killed_at = ckpt.read_checkpoint(checkpoints / ckpt.LATEST)["epoch"]  # never half-written
    assert killed_at >= 1

    code, out, err = finish(
        start(script_args(tiny, tmp_path, tiny_config(total_epochs=killed_at + 2)))
    )
    assert code == 0, err
    assert f"after epoch {killed_at}." in out
    assert epochs_in_metrics(checkpoints) == list(range(1, killed_at + 3))
    model, saved = load_embedding_model(checkpoints / ckpt.LATEST, "cpu")
    assert saved["epoch"] == killed_at + 2 and model.embedding_dim == 32
    load_embedding_model(checkpoints / ckpt.BEST, "cpu")
    assert not list(checkpoints.glob(".*.tmp"))


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny, tmp_path):
    config = tiny_config(warmup_epochs=1, total_epochs=2, samples_per_class=1)  # 2 steps per rank
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run(
        [
            str(torchrun), "--standalone", "--nproc_per_node", "2",
            "-m", "imgcls_pipeline_tests.core.training.ddp_worker", *script_args(tiny, tmp_path, config),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoints = tmp_path / "checkpoints"
    _, saved = load_embedding_model(checkpoints / ckpt.LATEST, "cpu")
    assert saved["epoch"] == 2 and epochs_in_metrics(checkpoints) == [1, 2]
    assert "2 batches per epoch per rank (2 ranks)" in done.stdout
    # both phases kept the ranks' weights identical (gradients all-reduced, backbone included)
    assert float((checkpoints / "rank_weight_difference.txt").read_text()) == 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_joined_by_c10d_rendezvous_train_what_one_process_trains(
    tiny, tmp_path, monkeypatch
):
    """The multi-node launch (one torchrun per machine, meeting at a c10d rendezvous endpoint),
    as 2 "nodes" × 1 process on this machine over gloo; compared with one process accumulating
    the same 2 P×K batches per optimizer step."""
    config = tiny_config(**EQUIVALENCE_CONFIG)
    args = script_args(tiny, tmp_path / "nodes", config)  # hardware.json: accumulation 1
    torchrun = Path(sys.executable).parent / "torchrun"
    node = [
        str(torchrun), "--nnodes", "2", "--nproc_per_node", "1", "--max_restarts", "0",
        "--rdzv_backend", "c10d", "--rdzv_endpoint", f"localhost:{free_port()}",
        "--rdzv_id", "imgcls-test",
        "-m", "imgcls_pipeline_tests.core.training.ddp_worker", "--same-images-every-run", *args,
    ]  # fmt: skip
    nodes = [
        subprocess.Popen(node, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in nodes]
    for process, (_, err) in zip(nodes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    assert "2 batches per epoch per rank (2 ranks)" in "".join(out for out, _ in outputs)
    checkpoints = tmp_path / "nodes" / "checkpoints"
    assert float((checkpoints / "rank_weight_difference.txt").read_text()) == 0.0

    monkeypatch.setattr(loop, "train_transform", same_images_every_run)
    data_dir, splits_dir = tiny
    loop.train(
        config,
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=tmp_path / "one",
        hardware=cpu_hardware(accum_steps=2),
        log=lambda _: None,
    )
    difference = largest_weight_difference(
        checkpoints / ckpt.LATEST, tmp_path / "one" / ckpt.LATEST
    )
    assert difference < WEIGHT_TOLERANCE, difference
