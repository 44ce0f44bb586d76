"""Training launched on Kubernetes: one GPU pod (``k8s``) or a multi-node TrainJob (``trainjob``).

The local launch stays in ``training_assets.py``; this module only picks the Pipes client of a
remote one and hands it the specs rendered in ``core/training/launch_specs.py``. dagster-k8s and
the Kubernetes client are imported only here, when a remote launch is configured.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.pipes.client import PipesClientCompletedInvocation

from imgcls_pipeline.core.training.launch_specs import (
    TrainingLaunch,
    check_shared,
    pod_spec,
    remote_arguments,
    torchrun_command,
    trainjob_manifest,
)

# Logs reach Dagster as they are printed, not when a buffer fills.
POD_ENV = {"PYTHONUNBUFFERED": "1"}


def run_remote(
    context: dg.AssetExecutionContext,
    launch: TrainingLaunch,
    arguments: list[str],
) -> PipesClientCompletedInvocation:
    """Train in the cluster with train_script's ``arguments``; every path they name must be on
    a volume the training pods mount."""
    arguments, paths = remote_arguments(arguments)
    check_shared(launch, paths)
    if launch.client == "k8s":
        from dagster_k8s import PipesK8sClient

        command = torchrun_command(1, launch.gpus_per_node, arguments)
        context.log.info(f"Training in a pod of {launch.image} with {launch.gpus_per_node} GPU(s).")
        return PipesK8sClient().run(
            context=context,
            namespace=launch.namespace,
            base_pod_spec=pod_spec(launch, command, POD_ENV),
            pod_wait_timeout=0,  # no limit: training on the full data set can take days
        )
    from dagster_k8s.utils import detect_current_namespace

    from imgcls_pipeline.defs.pipes_trainjob import PipesTrainJobClient

    name = trainjob_name(context.run_id)
    namespace = launch.namespace or detect_current_namespace(None) or "default"
    context.log.info(
        f"Training as TrainJob {namespace}/{name}: {launch.nodes} node(s) × "
        f"{launch.gpus_per_node} GPU(s) of {launch.image}."
    )
    return PipesTrainJobClient().run(
        context=context,
        manifest=trainjob_manifest(launch, name, namespace, arguments, POD_ENV),
    )


def trainjob_name(run_id: str) -> str:
    """A DNS label short enough for JobSet's pod and host names (``<name>-node-0-0-xxxxx``)."""
    return f"imgcls-train-{run_id[:8]}"
