"""Where training runs, and the Kubernetes specs that run it there (plain dicts, no cluster).

``local``: a process on this machine (torchrun with one process per GPU when there are more).
``k8s``: one pod per training with ``gpus_per_node`` GPUs, started by Dagster's
``PipesK8sClient``. ``trainjob``: ``nodes`` pods of ``gpus_per_node`` GPUs each, as a Kubeflow
Trainer ``TrainJob``; Kubeflow starts all pods together or none (gang scheduling through its
runtime's pod group policy, or Kueue), so a half-started job never holds GPUs while it waits.

Every pod runs ``train_script`` under torchrun. Several nodes meet through torchrun's c10d
rendezvous on node 0 (the JobSet's first pod, reachable by its stable host name); the training
code is the same as on one machine (``torchrun --nnodes 2`` is tested on one machine). The pods
and the Dagster run pod must mount the same volumes at the same paths: the settings, the photos,
the splits and the checkpoints are exchanged as files.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field, model_validator

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import Settings

TRAINJOB_GROUP = "trainer.kubeflow.org"
TRAINJOB_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"
# The trainer job of Kubeflow's torch runtimes, and the name of its container.
TRAINJOB_NODE = "node"
GPU_RESOURCE = "nvidia.com/gpu"
CONTAINER = "training"
# Terminating a run stops training with SIGTERM; it then saves its checkpoint and exits. Give it
# as long as a local run gets (defs/training_assets.py) before Kubernetes kills it.
TERMINATION_GRACE_SECONDS = 300
TRAIN_MODULE = "imgcls_pipeline.train_script"


class TrainingLaunch(Settings):
    """Deployment settings of the training launch (not stored with the model)."""

    client: Literal["local", "k8s", "trainjob"] = Field(
        "local",
        description="Where training runs: local (a process here), k8s (a GPU pod per training) "
        "or trainjob (several nodes, a Kubeflow TrainJob).",
    )
    image: str | None = Field(
        None, description="Container image with this project installed (k8s and trainjob)."
    )
    namespace: str | None = Field(
        None, description="Kubernetes namespace of the training pods; none: the run's own."
    )
    gpus_per_node: int = Field(1, ge=0, description="GPUs of each training pod.")
    nodes: int = Field(1, ge=1, description="Pods (machines) of a trainjob training.")
    cpu: str | None = Field(None, description="CPU request of each pod, e.g. 30; none: unset.")
    memory: str | None = Field(
        None, description="Memory request of each pod, e.g. 200Gi; none: unset."
    )
    shm_size: str = Field(
        "16Gi",
        description="Size of /dev/shm in each pod: DataLoader workers hand batches over through "
        "it, and a container's default 64 MB is too small for them.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Labels a node must carry to run training, e.g. {gpu: h200}.",
    )
    volumes: dict[str, str] = Field(
        default_factory=dict,
        description="Mount path → PersistentVolumeClaim; must hold the data, splits, "
        "checkpoint and artifacts folders, at the same paths as in the Dagster run pods.",
    )
    service_account: str | None = Field(
        None, description="Kubernetes service account of the training pods."
    )
    runtime: str = Field(
        "torch-distributed",
        description="Kubeflow ClusterTrainingRuntime a trainjob uses (its torch runtime).",
    )
    rendezvous_port: int = Field(
        29400, gt=0, lt=65536, description="Port of torchrun's c10d rendezvous on node 0."
    )

    @model_validator(mode="after")
    def _complete(self) -> TrainingLaunch:
        if self.client != "local" and not self.image:
            raise UserError(
                f"Training client '{self.client}' needs an image: set image to a container image "
                "with this project installed."
            )
        if self.nodes > 1 and self.client != "trainjob":
            raise UserError(
                f"nodes={self.nodes} needs client trainjob (a Kubeflow TrainJob starts the nodes "
                "together); set client: trainjob or nodes: 1."
            )
        if any(not PurePosixPath(path).is_absolute() for path in self.volumes):
            raise UserError("Each volumes entry maps an absolute mount path to a claim name.")
        return self


def torchrun_command(
    nodes: int, gpus_per_node: int, arguments: list[str], rendezvous: str | None = None
) -> list[str]:
    """The command of each training pod: train_script, under torchrun when it has company.

    Several nodes meet through c10d at ``rendezvous`` (host:port of node 0); one node with
    several GPUs needs no rendezvous server (``--standalone``).
    """
    script = ["-m", TRAIN_MODULE, *arguments]
    if nodes == 1 and gpus_per_node <= 1:
        return ["python", *script]
    torchrun = ["python", "-m", "torch.distributed.run"]
    per_node = f"--nproc_per_node={max(gpus_per_node, 1)}"
    if nodes == 1:
        return [*torchrun, "--standalone", per_node, *script]
    if rendezvous is None:
        raise ValueError("several nodes need a rendezvous endpoint")
    return [
        *torchrun,
        f"--nnodes={nodes}",
        per_node,
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={rendezvous}",
        *script,
    ]


# train_script's flags that name a file or folder, and what each is called in an error.
PATH_FLAGS = {
    "--config-json": "settings file",
    "--data-dir": "data folder",
    "--splits-dir": "splits folder",
    "--checkpoint-dir": "checkpoint folder",
    "--artifacts-dir": "artifacts folder",
    "--error-file": "error file",
}


def remote_arguments(arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """train_script's arguments for a pod, and the paths they name (by what they are).

    Paths become absolute (the pods mount the shared volumes where this process sees them), and
    ``--hardware-json`` is dropped: it describes this machine's GPUs, and the pod detects its own.
    """
    remote: list[str] = []
    paths: dict[str, str] = {}
    position = 0
    while position < len(arguments):
        flag = arguments[position]
        if flag == "--hardware-json":
            position += 2
            continue
        remote.append(flag)
        if flag in PATH_FLAGS:
            value = str(Path(arguments[position + 1]).resolve())
            paths[PATH_FLAGS[flag]] = value
            remote.append(value)
            position += 1
        position += 1
    return remote, paths


def check_shared(launch: TrainingLaunch, folders: dict[str, str]) -> None:
    """Each folder the training reads or writes must be on a volume the pods mount."""
    mounts = [PurePosixPath(path) for path in launch.volumes]
    for what, folder in folders.items():
        path = PurePosixPath(folder)
        if not any(path == mount or mount in path.parents for mount in mounts):
            raise UserError(
                f"The {what} {folder} is on no volume the training pods mount; add a volumes "
                "entry (mount path: claim) holding it, mounted at the same path in the Dagster "
                "run pods."
            )


def _volumes(launch: TrainingLaunch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": launch.shm_size}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    for number, (path, claim) in enumerate(sorted(launch.volumes.items())):
        name = f"shared-{number}"
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": name, "mountPath": path})
    return volumes, mounts


def _resources(launch: TrainingLaunch) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", launch.cpu), ("memory", launch.memory)) if v}
    resources: dict[str, Any] = {}
    if launch.gpus_per_node:
        resources["limits"] = {GPU_RESOURCE: str(launch.gpus_per_node)}  # a quantity
    if requests:
        resources["requests"] = requests
    return resources


def _tolerations(launch: TrainingLaunch) -> list[dict[str, str]]:
    # GPU node pools are commonly tainted so that only pods asking for GPUs land there.
    if not launch.gpus_per_node:
        return []
    return [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def env_list(env: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in sorted(env.items())]


def pod_spec(launch: TrainingLaunch, command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The pod spec of a ``k8s`` training (``PipesK8sClient``'s ``base_pod_spec``), which adds
    the Dagster Pipes variables to the first container's env."""
    volumes, mounts = _volumes(launch)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": launch.image,
        "command": command,
        "env": env_list(env),
        "resources": _resources(launch),
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "nodeSelector": dict(launch.node_selector),
        "tolerations": _tolerations(launch),
    }
    if launch.service_account:
        spec["serviceAccountName"] = launch.service_account
    return spec


def trainjob_rendezvous(name: str, port: int) -> str:
    """Host:port of node 0 of TrainJob ``name``: JobSet names its first pod's host
    ``<jobset>-<replicated job>-0-0`` under the job's headless service ``<jobset>``."""
    return f"{name}-{TRAINJOB_NODE}-0-0.{name}:{port}"


def trainjob_manifest(
    launch: TrainingLaunch, name: str, namespace: str, arguments: list[str], env: dict[str, str]
) -> dict[str, Any]:
    """A Kubeflow Trainer ``TrainJob``: ``nodes`` pods running train_script under torchrun,
    meeting through c10d on node 0."""
    command = torchrun_command(
        launch.nodes,
        launch.gpus_per_node,
        arguments,
        trainjob_rendezvous(name, launch.rendezvous_port),
    )
    volumes, mounts = _volumes(launch)
    trainer: dict[str, Any] = {
        "image": launch.image,
        "command": command,
        "numNodes": launch.nodes,
        "env": env_list(env),
    }
    resources = _resources(launch)
    if resources:
        trainer["resourcesPerNode"] = resources
    override: dict[str, Any] = {
        "volumes": volumes,
        "containers": [{"name": TRAINJOB_NODE, "volumeMounts": mounts}],
        "tolerations": _tolerations(launch),
    }
    if launch.node_selector:
        override["nodeSelector"] = dict(launch.node_selector)
    if launch.service_account:
        override["serviceAccountName"] = launch.service_account
    return {
        "apiVersion": f"{TRAINJOB_GROUP}/{TRAINJOB_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runtimeRef": {
                "name": launch.runtime,
                "apiGroup": TRAINJOB_GROUP,
                "kind": "ClusterTrainingRuntime",
            },
            "trainer": trainer,
            "podTemplateOverrides": [{"targetJobs": [{"name": TRAINJOB_NODE}], "spec": override}],
        },
    }
