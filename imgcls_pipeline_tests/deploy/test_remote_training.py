"""The training asset with the k8s training client: the pod it asks dagster-k8s for, and how a
failure there reaches the user. Only the call to the cluster is replaced (no cluster here)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.resources import PipelinePaths, TrainingLauncher
from imgcls_pipeline.defs.training_assets import trained_checkpoint


class NoProbe(GpuResource):
    """This machine's GPUs do not matter to a remote training: skip the probe (a torch import)."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        return None


def materialize(tmp_path: Path, launcher: TrainingLauncher) -> dg.ExecuteInProcessResult:
    paths = PipelinePaths(
        data_dir=str(tmp_path / "shared" / "data"),
        splits_dir=str(tmp_path / "shared" / "splits"),
        checkpoint_dir=str(tmp_path / "shared" / "checkpoints"),
        artifacts_dir=str(tmp_path / "shared" / "artifacts"),
    )
    return dg.materialize(
        [trained_checkpoint],
        resources={
            "paths": paths,
            "gpu": NoProbe(),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
            "training_launcher": launcher,
        },
        raise_on_error=False,
    )


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    error = result.get_step_failure_events()[0].step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def test_a_k8s_training_pod_gets_shared_paths_and_its_error_reaches_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_k8s import PipesK8sClient

    seen: dict = {}

    def fake_run(self, *, context, namespace, base_pod_spec, pod_wait_timeout):
        (container,) = base_pod_spec["containers"]
        seen["command"] = container["command"]
        options = dict(zip(container["command"][3::2], container["command"][4::2], strict=False))
        seen["config_exists"] = Path(options["--config-json"]).is_file()
        # What train_script does with a user's mistake before exiting 1 in the pod.
        Path(options["--error-file"]).write_text("The split train.csv is empty.", encoding="utf-8")
        raise RuntimeError("pod imgcls-1 failed")

    monkeypatch.setattr(PipesK8sClient, "run", fake_run)
    shared = tmp_path / "shared"
    launcher = TrainingLauncher(client="k8s", image="img:1", volumes={str(shared): "claim"})
    result = materialize(tmp_path, launcher)

    assert not result.success
    assert "The split train.csv is empty." in failure_messages(result)
    assert seen["command"][:3] == ["python", "-m", "imgcls_pipeline.train_script"]
    assert seen["config_exists"]
    options = dict(zip(seen["command"][3::2], seen["command"][4::2], strict=False))
    assert "--hardware-json" not in options  # the pod detects its own GPUs
    # The launch files are on the shared volume, next to the artifacts, and gone afterwards.
    assert Path(options["--config-json"]).parent.parent == shared / "artifacts"
    assert not Path(options["--config-json"]).exists()
    assert options["--checkpoint-dir"] == str(shared / "checkpoints")
    assert options["--data-dir"] == str(shared / "data")


def test_folders_the_pods_cannot_see_are_refused_before_anything_starts(tmp_path: Path) -> None:
    launcher = TrainingLauncher(client="k8s", image="img:1", volumes={"/mnt/other": "claim"})
    result = materialize(tmp_path, launcher)
    assert not result.success
    assert "is on no volume the training pods mount" in failure_messages(result)
