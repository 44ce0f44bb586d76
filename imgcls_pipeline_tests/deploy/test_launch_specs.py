"""The training pod and TrainJob specs, rendered without a cluster and checked field by field,
and against the parsers that will read them (torchrun's, train_script's, dagster-k8s's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.training import launch_specs as specs
from imgcls_pipeline.core.training.launch_specs import TrainingLaunch

ARGS = [
    "--config-json",
    "/shared/artifacts/imgcls-train-1-x/config.json",
    "--data-dir",
    "/shared/data",
    "--splits-dir",
    "/shared/splits",
    "--checkpoint-dir",
    "/shared/checkpoints",
    "--artifacts-dir",
    "/shared/artifacts",
    "--error-file",
    "/shared/artifacts/imgcls-train-1-x/error.txt",
]


def h200_launch(**changes) -> TrainingLaunch:
    values = {
        "client": "k8s",
        "image": "registry.example/imgcls:1.0",
        "gpus_per_node": 8,
        "cpu": "60",
        "memory": "900Gi",
        "node_selector": {"gpu": "h200"},
        "volumes": {"/shared": "imgcls-shared", "/models-cache": "hub-cache"},
        "service_account": "imgcls-training",
        **changes,
    }
    return TrainingLaunch(**values)


def torchrun_args(command: list[str]):
    from torch.distributed.run import get_args_parser

    assert command[:3] == ["python", "-m", "torch.distributed.run"]
    return get_args_parser().parse_args(command[3:])


def test_a_k8s_training_pod_asks_for_its_gpus_volumes_and_node():
    launch = h200_launch()
    command = specs.torchrun_command(1, launch.gpus_per_node, ARGS)
    spec = specs.pod_spec(launch, command, {"PYTHONUNBUFFERED": "1"})
    (container,) = spec["containers"]
    assert container["image"] == "registry.example/imgcls:1.0"
    assert container["resources"] == {
        "limits": {"nvidia.com/gpu": "8"},
        "requests": {"cpu": "60", "memory": "900Gi"},
    }
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in container["env"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"][1:]}
    mounts = {m["mountPath"]: claims.get(m["name"]) for m in container["volumeMounts"]}
    assert mounts == {"/dev/shm": None, "/models-cache": "hub-cache", "/shared": "imgcls-shared"}
    assert spec["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert spec["nodeSelector"] == {"gpu": "h200"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec["serviceAccountName"] == "imgcls-training"
    # SIGTERM on a terminated run: the checkpoint must have time to be written.
    assert spec["terminationGracePeriodSeconds"] == 300 and spec["restartPolicy"] == "Never"
    # One pod, eight GPUs: torchrun without a rendezvous server, one process per GPU.
    parsed = torchrun_args(container["command"])
    assert parsed.standalone and parsed.nproc_per_node == "8" and parsed.module
    assert parsed.training_script == "imgcls_pipeline.train_script"
    assert parsed.training_script_args == ARGS


def test_dagster_k8s_accepts_the_pod_spec_and_adds_the_pipes_context():
    from dagster_k8s.pipes import build_pod_body

    launch = h200_launch(gpus_per_node=1)
    command = specs.torchrun_command(1, 1, ARGS)
    assert command == ["python", "-m", "imgcls_pipeline.train_script", *ARGS]
    pod = build_pod_body(
        pod_name="dagster-run-1",
        image=None,
        command=None,
        env_vars={"DAGSTER_PIPES_CONTEXT": "ctx", "DAGSTER_PIPES_MESSAGES": "msg"},
        base_pod_meta=None,
        base_pod_spec=specs.pod_spec(launch, command, {"PYTHONUNBUFFERED": "1"}),
    )
    container = pod.spec.containers[0]
    assert container.command == command and container.image == launch.image
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert {e.name for e in container.env} == {
        "PYTHONUNBUFFERED",
        "DAGSTER_PIPES_CONTEXT",
        "DAGSTER_PIPES_MESSAGES",
    }
    assert pod.spec.volumes[1].persistent_volume_claim.claim_name == "hub-cache"
    assert pod.spec.termination_grace_period_seconds == 300


def test_train_script_accepts_the_arguments_it_is_given():
    from imgcls_pipeline.train_script import _parse_args

    parsed = _parse_args(ARGS)
    assert parsed.checkpoint_dir == "/shared/checkpoints" and parsed.hardware_json is None


def test_a_trainjob_runs_torchrun_on_every_node_meeting_through_c10d_on_node_zero():
    launch = h200_launch(client="trainjob", nodes=4)
    job = specs.trainjob_manifest(launch, "imgcls-train-ab12cd34", "ml", ARGS, {"A": "1"})
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert job["metadata"] == {"name": "imgcls-train-ab12cd34", "namespace": "ml"}
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["image"] == launch.image
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert trainer["env"] == [{"name": "A", "value": "1"}]
    parsed = torchrun_args(trainer["command"])
    assert (parsed.nnodes, parsed.nproc_per_node, parsed.rdzv_backend) == ("4", "8", "c10d")
    # Node 0's stable host name under the JobSet's headless service.
    assert parsed.rdzv_endpoint == "imgcls-train-ab12cd34-node-0-0.imgcls-train-ab12cd34:29400"
    assert parsed.training_script_args == ARGS and not parsed.standalone
    (override,) = job["spec"]["podTemplateOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    assert override["spec"]["nodeSelector"] == {"gpu": "h200"}
    assert override["spec"]["serviceAccountName"] == "imgcls-training"
    (mounts,) = override["spec"]["containers"]
    assert mounts["name"] == "node"
    assert {m["mountPath"] for m in mounts["volumeMounts"]} == {
        "/dev/shm",
        "/shared",
        "/models-cache",
    }
    assert {v["name"] for v in override["spec"]["volumes"]} == {
        m["name"] for m in mounts["volumeMounts"]
    }


def test_the_pipes_context_is_added_to_every_trainjob_node():
    from imgcls_pipeline.defs.pipes_trainjob import failure_message, trainjob_state, with_env

    job = specs.trainjob_manifest(h200_launch(client="trainjob", nodes=2), "j", "ns", ARGS, {})
    body = with_env(job, {"DAGSTER_PIPES_CONTEXT": "c"})
    assert body["spec"]["trainer"]["env"] == [{"name": "DAGSTER_PIPES_CONTEXT", "value": "c"}]
    assert job["spec"]["trainer"]["env"] == []  # the rendered manifest is left as it was
    assert trainjob_state({"status": {}}) is None
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert trainjob_state(done) == "Complete"
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "message": "OOM"}]}}
    assert trainjob_state(failed) == "Failed" and failure_message(failed) == "OOM"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image": None}, "needs an image"),
        ({"nodes": 2}, "needs client trainjob"),
        ({"volumes": {"shared": "claim"}}, "absolute mount path"),
        ({"client": "gke"}, "client"),
    ],
)
def test_an_incomplete_launch_is_one_sentence(changes, message):
    with pytest.raises(UserError, match=message):
        h200_launch(**changes)


def test_remote_arguments_are_absolute_and_leave_this_machines_hardware_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = ["--config-json", "/s/c.json", "--hardware-json", "/s/h.json", "--data-dir", "data"]
    remote, paths = specs.remote_arguments([*local, "--progress"])
    assert remote == [
        "--config-json",
        "/s/c.json",
        "--data-dir",
        str(tmp_path / "data"),
        "--progress",
    ]
    assert paths == {"settings file": "/s/c.json", "data folder": str(tmp_path / "data")}


def test_a_folder_outside_the_shared_volumes_is_refused_by_name():
    launch = h200_launch()
    specs.check_shared(launch, {"data folder": "/shared/data", "splits folder": "/shared"})
    with pytest.raises(UserError, match="checkpoint folder /home/me/ckpt is on no volume"):
        specs.check_shared(launch, {"checkpoint folder": "/home/me/ckpt"})
    with pytest.raises(UserError):
        specs.check_shared(launch, {"data folder": "/sharedother/data"})  # a prefix, no parent


def test_the_launcher_reads_the_deployment_file(tmp_path: Path, monkeypatch):
    from imgcls_pipeline.defs.resources import TRAINING_LAUNCH_FILE_ENV, TrainingLauncher

    assert TrainingLauncher.from_env().settings().client == "local"
    file = tmp_path / "launch.yaml"
    file.write_text(
        "client: trainjob\nimage: img:1\nnodes: 2\ngpus_per_node: 8\n"
        "volumes: {/shared: imgcls-shared}\nnode_selector: {gpu: h200}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(TRAINING_LAUNCH_FILE_ENV, str(file))
    settings = TrainingLauncher.from_env().settings()
    assert (settings.client, settings.nodes, settings.volumes) == (
        "trainjob",
        2,
        {"/shared": "imgcls-shared"},
    )
    file.write_text("client: k8s\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"Training launch file {file}: .*needs an image"):
        TrainingLauncher.from_env()


def test_the_shipped_helm_values_and_launch_file_agree(monkeypatch):
    """The example deployment is valid as shipped: the launch file passes its own checks, and the
    folders the run pods are given lie on the volumes the training pods mount."""
    import yaml

    from imgcls_pipeline.defs.resources import TRAINING_LAUNCH_FILE_ENV, TrainingLauncher

    helm = Path(__file__).resolve().parents[2] / "deploy" / "helm"
    monkeypatch.setenv(TRAINING_LAUNCH_FILE_ENV, str(helm / "training-launch.yaml"))
    launch = TrainingLauncher.from_env().settings()
    assert launch.client == "k8s" and launch.image
    values = yaml.safe_load((helm / "values.yaml").read_text(encoding="utf-8"))
    run_env = dict(
        item.split("=", 1) for item in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"]
    )
    folders = {name: path for name, path in run_env.items() if name.endswith("_DIR")}
    assert len(folders) == 4
    specs.check_shared(launch, folders)
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert {e["name"]: e["value"] for e in code["env"]}.items() >= run_env.items()
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
