"""Dagster Pipes for a Kubeflow TrainJob: the multi-node training client.

The TrainJob's pods get the Pipes context through their environment (as ``PipesK8sClient``
gives it to its pod); rank 0 of node 0 reports, so its pod's log stream carries the messages and
is read with dagster-k8s's own reader. The client creates the TrainJob, follows node 0's log
until it ends, waits for the job's Complete or Failed condition, and deletes the TrainJob in
every case (a terminated run thereby stops the training pods, which save their checkpoint on
SIGTERM). Scheduling, gang start, pod restarts and the rendezvous are Kubeflow's and torchrun's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import dagster as dg
import kubernetes
from dagster._core.pipes.client import PipesClientCompletedInvocation
from dagster._core.pipes.utils import PipesEnvContextInjector, open_pipes_session
from dagster_k8s.client import DagsterKubernetesClient, WaitForPodState
from dagster_k8s.pipes import PipesK8sPodLogsMessageReader

from imgcls_pipeline.core.training.launch_specs import (
    TRAINJOB_GROUP,
    TRAINJOB_NODE,
    TRAINJOB_PLURAL,
    TRAINJOB_VERSION,
    env_list,
)

# Labels JobSet (which a TrainJob runs as) puts on its pods: which job set, and which pod.
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
# Pods of a gang-scheduled job wait until the whole gang fits the cluster: allow a long queue.
POD_START_TIMEOUT_SECONDS = 24 * 3600


class TrainJobFailed(Exception):
    pass


class PipesTrainJobClient(dg.PipesClient):
    def __init__(self, poll_interval: float = 10.0):
        self.poll_interval = poll_interval

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.AssetExecutionContext,
        manifest: Mapping[str, Any],
        extras: Mapping[str, Any] | None = None,
    ) -> PipesClientCompletedInvocation:
        _load_kube_config()
        client = DagsterKubernetesClient.production_client()
        custom = kubernetes.client.CustomObjectsApi()
        reader = PipesK8sPodLogsMessageReader()
        with open_pipes_session(
            context=context,
            extras=extras,
            context_injector=PipesEnvContextInjector(),
            message_reader=reader,
        ) as session:
            body = with_env(manifest, session.get_bootstrap_env_vars())
            name = body["metadata"]["name"]
            namespace = body["metadata"]["namespace"]
            custom.create_namespaced_custom_object(
                TRAINJOB_GROUP, TRAINJOB_VERSION, namespace, TRAINJOB_PLURAL, body
            )
            context.log.info(f"Created TrainJob {namespace}/{name}.")
            try:
                pod = self._node_zero_pod(client, namespace, name)
                client.wait_for_pod(
                    pod,
                    namespace,
                    wait_for_state=WaitForPodState.Ready,
                    wait_time_between_attempts=self.poll_interval,
                    wait_timeout=POD_START_TIMEOUT_SECONDS,
                )
                reader.consume_pod_logs(
                    context=context, core_api=client.core_api, pod_name=pod, namespace=namespace
                )
                self._wait_for_end(custom, namespace, name)
            finally:
                custom.delete_namespaced_custom_object(
                    TRAINJOB_GROUP,
                    TRAINJOB_VERSION,
                    namespace,
                    TRAINJOB_PLURAL,
                    name,
                    propagation_policy="Foreground",
                )
        return PipesClientCompletedInvocation(session)

    def _node_zero_pod(self, client: DagsterKubernetesClient, namespace: str, name: str) -> str:
        selector = f"{JOBSET_LABEL}={name},{REPLICATED_JOB_LABEL}={TRAINJOB_NODE},{INDEX_LABEL}=0"
        deadline = time.monotonic() + POD_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            pods = client.core_api.list_namespaced_pod(namespace, label_selector=selector).items
            if pods:
                return pods[0].metadata.name
            time.sleep(self.poll_interval)
        raise TrainJobFailed(f"TrainJob {namespace}/{name} started no pod in time.")

    def _wait_for_end(self, custom: Any, namespace: str, name: str) -> None:
        while True:
            job = custom.get_namespaced_custom_object(
                TRAINJOB_GROUP, TRAINJOB_VERSION, namespace, TRAINJOB_PLURAL, name
            )
            state = trainjob_state(job)
            if state == "Complete":
                return
            if state == "Failed":
                raise TrainJobFailed(f"TrainJob {namespace}/{name} failed: {failure_message(job)}")
            time.sleep(self.poll_interval)


def with_env(manifest: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``manifest`` whose trainer env also holds ``env`` (the Pipes bootstrap)."""
    body = {**manifest, "spec": {**manifest["spec"]}}
    trainer = {**body["spec"]["trainer"]}
    trainer["env"] = [*trainer.get("env", []), *env_list(dict(env))]
    body["spec"]["trainer"] = trainer
    return body


def trainjob_state(job: Mapping[str, Any]) -> str | None:
    """The end state, Complete or Failed, once the TrainJob has one (its conditions), else None."""
    for condition in job.get("status", {}).get("conditions", []):
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"]
    return None


def failure_message(job: Mapping[str, Any]) -> str:
    for condition in job.get("status", {}).get("conditions", []):
        if condition.get("type") == "Failed":
            return condition.get("message") or condition.get("reason") or "no reason given"
    return "no reason given"


def _load_kube_config() -> None:
    # Inside the cluster (the run pod) the service account's token; elsewhere ~/.kube/config.
    if os.getenv("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config()
    else:
        kubernetes.config.load_kube_config()
