"""The TrainJob Pipes client's conversation with the Kubernetes API, against a fake API:
create the job with the Pipes context, follow node 0's log, wait for the end, always delete."""

from types import SimpleNamespace

import dagster as dg
import pytest
from dagster_k8s.pipes import PipesK8sPodLogsMessageReader

from imgcls_pipeline.core.training import launch_specs as specs
from imgcls_pipeline.defs import pipes_trainjob
from imgcls_pipeline.defs.pipes_trainjob import PipesTrainJobClient, TrainJobFailed


class FakeCluster:
    def __init__(self, end: str):
        self.end = end
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.log_of: list[str] = []
        self.selectors: list[str] = []
        self.polls = 0

    # CustomObjectsApi
    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        self.created.append(body)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.polls += 1
        if self.polls < 2:
            return {"status": {}}  # still running
        return {"status": {"conditions": [{"type": self.end, "status": "True", "message": "OOM"}]}}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self.deleted.append(f"{namespace}/{name}")

    # DagsterKubernetesClient
    @property
    def core_api(self):
        return self

    def list_namespaced_pod(self, namespace, label_selector):
        self.selectors.append(label_selector)
        return SimpleNamespace(
            items=[SimpleNamespace(metadata=SimpleNamespace(name="j-node-0-0-x"))]
        )

    def wait_for_pod(self, *args, **kwargs):
        return None


@pytest.fixture
def cluster(request, monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster(request.param)
    monkeypatch.setattr(pipes_trainjob, "_load_kube_config", lambda: None)
    monkeypatch.setattr(pipes_trainjob.kubernetes.client, "CustomObjectsApi", lambda: fake)
    monkeypatch.setattr(
        pipes_trainjob.DagsterKubernetesClient, "production_client", staticmethod(lambda: fake)
    )

    def follow_log(self, context, core_api, pod_name, namespace):
        fake.log_of.append(pod_name)

    monkeypatch.setattr(PipesK8sPodLogsMessageReader, "consume_pod_logs", follow_log)
    return fake


def train_with(manifest: dict) -> dg.ExecuteInProcessResult:
    @dg.asset
    def trained(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        PipesTrainJobClient(poll_interval=0).run(context=context, manifest=manifest)
        return dg.MaterializeResult()

    return dg.materialize([trained], raise_on_error=False)


def manifest() -> dict:
    launch = specs.TrainingLaunch(client="trainjob", image="img:1", nodes=2, gpus_per_node=8)
    return specs.trainjob_manifest(launch, "j", "ml", ["--config-json", "/s/c.json"], {})


@pytest.mark.parametrize("cluster", ["Complete"], indirect=True)
def test_a_trainjob_is_created_with_the_pipes_context_followed_and_deleted(cluster):
    assert train_with(manifest()).success
    (body,) = cluster.created
    env = {e["name"] for e in body["spec"]["trainer"]["env"]}
    assert "DAGSTER_PIPES_CONTEXT" in env and "DAGSTER_PIPES_MESSAGES" in env
    assert cluster.selectors[0].endswith(
        "replicatedjob-name=node,batch.kubernetes.io/job-completion-index=0"
    )
    assert cluster.log_of == ["j-node-0-0-x"]  # node 0's pod carries the Pipes messages
    assert cluster.polls == 2 and cluster.deleted == ["ml/j"]


@pytest.mark.parametrize("cluster", ["Failed"], indirect=True)
def test_a_failed_trainjob_fails_the_step_with_its_reason_and_is_deleted(cluster):
    result = train_with(manifest())
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    while error.cause is not None:  # Dagster wraps what the step raised
        error = error.cause
    assert error.cls_name == TrainJobFailed.__name__ and "failed: OOM" in error.message
    assert cluster.deleted == ["ml/j"]
