"""The Helm chart (k8s/vidpred), the Dockerfile and infra/, checked offline: helm lint/template,
kubernetes-validate, the KubeRay CRD schemas, checkov, hadolint, yamllint, shellcheck, the values schema's
refusals, the IAM policy.

No cluster and no Docker engine here: these are static checks of what would be sent / built. Tools come from
tests/k8s_tools.py (cached; a test skips with the reason when its tool cannot be fetched).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

import k8s_tools as kt
from k8s_tools import CHART, MODES, REPO

RAY_KINDS = {"train": "RayJob", "tune": "RayJob", "cluster": "RayCluster"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """mode → (YAML text, objects), rendered once per module with ci/<mode>-values.yaml."""
    tmp = tmp_path_factory.mktemp("render")
    return {mode: kt.render_mode(tmp, mode) for mode in MODES}


SPOT_VALUES = CHART / "ci" / "spot-values.yaml"
SUBMISSION_MODES = ("K8sJobMode", "SidecarMode", "HTTPMode")


@pytest.fixture(scope="module")
def spot_rendered(tmp_path_factory):
    """mode → (YAML text, objects) of ci/spot-values.yaml rendered in that mode (--set mode=…)."""
    tmp = tmp_path_factory.mktemp("render-spot")
    return {mode: kt.render(tmp, "-f", str(SPOT_VALUES), "--set", f"mode={mode}") for mode in MODES}


@pytest.fixture(scope="module")
def submission_rendered(tmp_path_factory):
    """job.submissionMode → (YAML text, objects) of ci/train-values.yaml rendered with it."""
    tmp = tmp_path_factory.mktemp("render-submission")
    return {sm: kt.render(tmp, "-f", str(CHART / "ci" / "train-values.yaml"), "--set", f"job.submissionMode={sm}")
            for sm in SUBMISSION_MODES}


def merged(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def effective_values(mode):
    """values.yaml overlaid with ci/<mode>-values.yaml, as helm merges them."""
    return merged(yaml.safe_load((CHART / "values.yaml").read_text()),
                  yaml.safe_load((CHART / "ci" / f"{mode}-values.yaml").read_text()))


def ray_object(objects):
    return next(o for o in objects if o["kind"] in ("RayJob", "RayCluster"))


def cluster_spec(obj):
    return obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]


def containers(obj):
    return [(role, c) for role, tpl in kt.pod_templates(obj) for c in tpl["spec"]["containers"]]


# --------------------------------------------------------------------------------------------- helm

@pytest.mark.parametrize("mode", MODES)
def test_helm_lint_strict(mode, tmp_path):
    proc = kt.run_helm("lint", "--strict", str(CHART), "-f", str(CHART / "ci" / f"{mode}-values.yaml"),
                       tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_package_ships_the_chart():
    """`vidpred cluster` renders the chart in k8s/vidpred itself: the package's chart is that directory."""
    from vidpred.cluster.manifest import chart_dir

    assert chart_dir() == CHART.resolve()
    assert (REPO / "vidpred" / "cluster" / "chart").resolve() == CHART.resolve()


@pytest.mark.parametrize("mode", MODES)
def test_template_renders_the_mode(mode, rendered):
    _, objects = rendered[mode]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ServiceAccount", "ConfigMap", "NetworkPolicy", RAY_KINDS[mode]])
    ray = ray_object(objects)
    assert ray["apiVersion"] == "ray.io/v1"
    assert all(o["metadata"]["namespace"] == "vidpred" for o in objects)
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    spec = cluster_spec(ray)
    head = spec["headGroupSpec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in head["containers"][0]["volumeMounts"]}
    assert mounts["/etc/vidpred"] == "vidpred-config"
    assert any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in head["volumes"])
    if mode == "train":
        assert ray["spec"]["entrypoint"] == "vidpred train --config /etc/vidpred/config.yaml"
    elif mode == "tune":
        assert ray["spec"]["entrypoint"] == "vidpred tune /etc/vidpred/experiment.yaml"
        assert yaml.safe_load(cm["data"]["experiment.yaml"])["scheduler"] == "asha"
    if ray["kind"] == "RayJob":
        s = ray["spec"]
        assert s["shutdownAfterJobFinishes"] is True
        assert s["ttlSecondsAfterFinished"] >= 0 and s["activeDeadlineSeconds"] > 0
        assert s["submissionMode"] == "K8sJobMode"


@pytest.mark.parametrize("mode", MODES)
def test_head_has_no_gpu_and_workers_do(mode, rendered):
    _, objects = rendered[mode]
    values = effective_values(mode)
    spec = cluster_spec(ray_object(objects))
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert not any("gpu" in k for k in {**head["resources"].get("limits", {}), **head["resources"].get("requests", {})})
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (group,) = spec["workerGroupSpecs"]
    worker = group["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == values["worker"]["gpus"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker["tolerations"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    if values["worker"].get("nodeSelector"):
        assert worker["nodeSelector"] == values["worker"]["nodeSelector"]
    assert spec["enableInTreeAutoscaling"] is bool(values.get("autoscaling", {}).get("enabled"))


@pytest.mark.parametrize("mode", MODES)
def test_pods_are_locked_down(mode, rendered):
    """Non-root, no privilege escalation, no capabilities, read-only root with /tmp and /dev/shm on emptyDirs,
    requests and limits everywhere, service-account token only where the autoscaler needs it."""
    _, objects = rendered[mode]
    ray = ray_object(objects)
    autoscaling = cluster_spec(ray)["enableInTreeAutoscaling"]
    for role, tpl in kt.pod_templates(ray):
        spec = tpl["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] >= 10000
        assert spec["automountServiceAccountToken"] is (autoscaling and role == "head"), role
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], role
            assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True, role
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], role
            if role != "submitter":
                assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (role, kind)


@pytest.mark.parametrize("mode", MODES)
def test_no_credentials_in_the_manifest(mode, rendered):
    """S3 keys only by reference to an existing Secret; nothing that looks like a key in plain text."""
    text, objects = rendered[mode]
    for role, c in containers(ray_object(objects)):
        for env in c.get("env", []):
            if re.search(r"SECRET|ACCESS_KEY|TOKEN|PASSWORD", env["name"]):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], (role, env)
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    if mode == "tune":  # ci values name a Secret: referenced by name and key only
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for _, c in containers(ray_object(objects))
                for e in c.get("env", []) if "valueFrom" in e}
        assert refs == {"vidpred-s3"}
    if mode == "train":  # IRSA: the role is an annotation of the ServiceAccount the pods run as
        sa = next(o for o in objects if o["kind"] == "ServiceAccount")
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
        for _, tpl in kt.pod_templates(ray_object(objects)):
            assert tpl["spec"]["serviceAccountName"] == sa["metadata"]["name"]


@pytest.mark.parametrize("mode", MODES)
def test_configmap_holds_a_valid_vidpred_config(mode, rendered):
    """The chart's merge of values into the config is what `vidpred train --config` accepts in the pod."""
    from vidpred import config as config_mod

    _, objects = rendered[mode]
    values = effective_values(mode)
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    cfg = config_mod.validate(yaml.safe_load(cm["data"]["config.yaml"]))
    assert cfg.data.uri == values["storage"]["dataUri"]
    assert cfg.train.storage_path == values["storage"]["checkpointUri"]
    assert cfg.train.use_gpu is True and cfg.train.name == "run1-vidpred"
    w = values["worker"]
    pods = w["maxReplicas"] if values.get("autoscaling", {}).get("enabled") else w["replicas"]
    assert cfg.train.num_workers * cfg.train.gpus_per_worker == pods * w["gpus"]
    # elastic down to minReplicas pods' GPUs when fewer pods than the group's may be up, else a fixed size;
    # tune's trials always have a fixed size (the pods are room for concurrent trials)
    least = max(1, int(w["minReplicas"] * w["gpus"] // cfg.train.gpus_per_worker))
    assert cfg.train.min_workers == (least if w["minReplicas"] < pods and mode != "tune" else None)


# --------------------------------------------------------------------------------------------- validators

@pytest.mark.parametrize("mode", MODES)
def test_kubernetes_validate_strict(mode, rendered, tmp_path):
    """Built-in objects, and the pods the Ray objects will make, against Kubernetes 1.33's own schemas."""
    _, objects = rendered[mode]
    pods = kt.lifted_pods(objects)
    path = kt.write_docs(tmp_path / f"{mode}.yaml", objects + pods)
    proc = subprocess.run([kt.kubernetes_validate(), "--strict", "-k", kt.KUBE_VERSION, str(path)],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    passed = re.findall(r"passed for resource (\S+)", out)
    assert len(passed) == len(objects) - 1 + len(pods), out  # all but the Ray object (no schema there: below)
    assert "ERROR" not in out


@pytest.mark.parametrize("mode", MODES)
def test_ray_objects_match_the_kuberay_crds(mode, rendered):
    _, objects = rendered[mode]
    ray = ray_object(objects)
    assert kt.crd_errors(ray) == []


def test_crd_check_catches_a_misspelt_field(rendered):
    """The CRD check is strict: a field the CRD does not know (as an API server with strict field validation
    would refuse, or silently drop) is an error, as is a wrong type."""
    _, objects = rendered["train"]
    ray = ray_object(objects)
    bad = yaml.safe_load(yaml.safe_dump(ray))
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    bad["spec"]["ttlSecondsAfterFinished"] = "600"
    errors = kt.crd_errors(bad)
    assert any("maxReplica" in e and "Additional properties" in e for e in errors), errors
    assert any(e.startswith("spec/ttlSecondsAfterFinished") for e in errors), errors


@pytest.mark.parametrize("mode", MODES)
def test_rendered_yaml_lints(mode, rendered, spot_rendered, submission_rendered):
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig("extends: default\nrules: {line-length: {max: 250}, document-start: disable, "
                          "indentation: {indent-sequences: whatever}, comments: {min-spaces-from-content: 1}}")
    texts = {"ci": rendered[mode][0], "spot": spot_rendered[mode][0]}
    if mode == "train":
        texts.update({sm: text for sm, (text, _) in submission_rendered.items()})
    for which, text in texts.items():
        problems = [f"{p.line}: {p.desc}" for p in linter.run(text, conf) if p.level == "error"]
        assert problems == [], which


# --------------------------------------------------------------------------------------------- spot pools, lifecycle, Kueue

def _on_demand_only(affinity):
    """The node-affinity terms that keep a pod off GKE spot nodes."""
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [e for t in terms for e in t["matchExpressions"]
            if e == {"key": "cloud.google.com/gke-spot", "operator": "DoesNotExist"}]


@pytest.mark.parametrize("mode", MODES)
def test_spot_values_lint_strict(mode, tmp_path):
    proc = kt.run_helm("lint", "--strict", str(CHART), "-f", str(SPOT_VALUES), "--set", f"mode={mode}", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("mode", MODES)
def test_spot_values_put_workers_on_spot_and_the_head_on_demand(mode, spot_rendered):
    """ci/spot-values.yaml: GPU workers select and tolerate GKE spot nodes (the NVIDIA toleration kept), get
    the values' grace period, form a group of 2 pods elastic down to 1 (the run's config 8..16 workers); the head (num-cpus 0) and the
    submitter must land off spot nodes; the Ray object carries the Kueue queue label."""
    _, objects = spot_rendered[mode]
    values = yaml.safe_load(SPOT_VALUES.read_text())
    ray = ray_object(objects)
    assert ray["kind"] == RAY_KINDS[mode]
    assert ray["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-spot"
    for _, tpl in kt.pod_templates(ray):  # the queue is the Ray object's, not its pods'
        assert "kueue.x-k8s.io/queue-name" not in tpl["metadata"]["labels"]
    spec = cluster_spec(ray)
    assert spec["enableInTreeAutoscaling"] is False
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert _on_demand_only(head["template"]["spec"]["affinity"])
    (group,) = spec["workerGroupSpecs"]
    worker = group["template"]["spec"]
    assert (group["minReplicas"], group["replicas"], group["maxReplicas"]) == (1, 2, 2)
    assert worker["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert worker["affinity"] == values["worker"]["affinity"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker["tolerations"]
    assert {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in worker["tolerations"]
    assert worker["terminationGracePeriodSeconds"] == 15
    assert "terminationGracePeriodSeconds" not in head["template"]["spec"]  # the head keeps Kubernetes' default
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    cfg = yaml.safe_load(cm["data"]["config.yaml"])["train"]
    assert cfg["num_workers"] == 16 and cfg["max_failures"] == 50
    # minReplicas 1 of 8 GPUs: the elastic range 8..16 (tune's trials keep a fixed size)
    assert cfg.get("min_workers") == (None if mode == "tune" else 8)
    if ray["kind"] == "RayJob":
        s = ray["spec"]
        assert (s["submissionMode"], s["shutdownAfterJobFinishes"], s["ttlSecondsAfterFinished"],
                s["activeDeadlineSeconds"], s["backoffLimit"]) == ("K8sJobMode", True, 3600, 172800, 0)
        submitter = s["submitterPodTemplate"]["spec"]
        assert _on_demand_only(submitter["affinity"])
        assert "tolerations" not in submitter and "nodeSelector" not in submitter


@pytest.mark.parametrize("mode", MODES)
def test_spot_values_match_the_kuberay_crds(mode, spot_rendered):
    assert kt.crd_errors(ray_object(spot_rendered[mode][1])) == []


@pytest.mark.parametrize("mode", MODES)
def test_spot_values_kubernetes_validate_strict(mode, spot_rendered, tmp_path):
    _, objects = spot_rendered[mode]
    pods = kt.lifted_pods(objects)
    path = kt.write_docs(tmp_path / f"spot-{mode}.yaml", objects + pods)
    proc = subprocess.run([kt.kubernetes_validate(), "--strict", "-k", kt.KUBE_VERSION, str(path)],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert len(re.findall(r"passed for resource (\S+)", out)) == len(objects) - 1 + len(pods), out
    assert "ERROR" not in out


def test_default_lifecycle_and_placement_are_unchanged(rendered):
    """The defaults render what the chart rendered before these values existed: K8sJobMode with the submitter
    pod, no queue label, no placement for the submitter, Kubernetes' own 30 s grace period for workers."""
    _, objects = rendered["train"]
    job = ray_object(objects)
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert job["spec"]["submissionMode"] == "K8sJobMode"
    submitter = job["spec"]["submitterPodTemplate"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity"} & set(submitter)
    (group,) = cluster_spec(job)["workerGroupSpecs"]
    assert group["template"]["spec"]["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize("submission", SUBMISSION_MODES)
def test_submission_modes(submission, submission_rendered, tmp_path):
    """Each submission mode renders a RayJob the CRD accepts; only K8sJobMode has a submitter pod template
    (KubeRay refuses one in SidecarMode; HTTPMode has no submitter). The pods still pass kubernetes-validate."""
    _, objects = submission_rendered[submission]
    job = ray_object(objects)
    assert job["spec"]["submissionMode"] == submission
    assert kt.crd_errors(job) == []
    assert ("submitterPodTemplate" in job["spec"]) is (submission == "K8sJobMode")
    roles = [role for role, _ in kt.pod_templates(job)]
    assert roles == ["head", "worker-gpu"] + (["submitter"] if submission == "K8sJobMode" else [])
    if submission == "SidecarMode":  # KubeRay: the head pod's restartPolicy must be Never or unset
        assert "restartPolicy" not in cluster_spec(job)["headGroupSpec"]["template"]["spec"]
    pods = kt.lifted_pods(objects)
    path = kt.write_docs(tmp_path / f"{submission}.yaml", objects + pods)
    proc = subprocess.run([kt.kubernetes_validate(), "--strict", "-k", kt.KUBE_VERSION, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ERROR" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_numeric_queue_name_stays_a_string_label(mode, tmp_path):
    """Label values are strings: a LocalQueue called 123 must not render as the YAML integer 123."""
    _, objects = kt.render(tmp_path, "-f", str(CHART / "ci" / f"{mode}-values.yaml"),
                           "--set", "autoscaling.enabled=false", "--set-string", "kueue.queueName=123")
    assert ray_object(objects)["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "123"


def _notes(tmp_path, *args):
    proc = kt.run_helm("install", "run1", str(CHART), "--namespace", "vidpred", "--dry-run=client", *args,
                       tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_install_notes_follow_the_submission_mode_and_the_queue(tmp_path):
    """What `helm install` prints next: the log command that works for the submission mode, the queue."""
    plain = _notes(tmp_path, "-f", str(CHART / "ci" / "train-values.yaml"))
    assert "vidpred cluster logs run1-vidpred -n vidpred --follow" in plain and "Kueue" not in plain
    http = _notes(tmp_path, "-f", str(SPOT_VALUES), "--set", "job.submissionMode=HTTPMode")
    assert "vidpred cluster logs" not in http and "ray job logs" in http
    assert "Queued in the Kueue LocalQueue gpu-spot" in http


def test_a_kept_cluster_without_ttl_renders(tmp_path):
    """shutdownAfterJobFinishes=false is allowed when the TTL is 0 (the cluster is kept until the RayJob is
    deleted), and then renders as asked."""
    _, objects = kt.render(tmp_path, "-f", str(CHART / "ci" / "train-values.yaml"),
                           "--set", "job.shutdownAfterJobFinishes=false", "--set", "job.ttlSecondsAfterFinished=0")
    job = ray_object(objects)
    assert job["spec"]["shutdownAfterJobFinishes"] is False and job["spec"]["ttlSecondsAfterFinished"] == 0
    assert kt.crd_errors(job) == []


# --------------------------------------------------------------------------------------------- values schema

BAD_VALUES = [
    # (what, helm args after ci/train-values.yaml, what the message must say)
    ("no GPU count", ["--set", "worker.gpus=null"], "at '/worker': missing property 'gpus'"),
    ("zero GPUs", ["--set", "worker.gpus=0"], "at '/worker/gpus': minimum: got 0, want 1"),
    ("negative replicas", ["--set", "worker.replicas=-1"], "at '/worker/replicas': minimum: got -1, want 0"),
    ("negative maxReplicas", ["--set", "worker.maxReplicas=-2"], "at '/worker/maxReplicas': minimum: got -2, want 1"),
    ("missing storage URI", ["--set", "storage.checkpointUri="], "at '/storage/checkpointUri'"),
    ("storage URI not s3/gs/absolute", ["--set", "storage.dataUri=http://example.com/x"], "at '/storage/dataUri'"),
    ("unknown mode", ["--set", "mode=serve"], "at '/mode'"),
    ("misspelt key", ["--set", "worker.replica=2"], "additional properties 'replica' not allowed"),
    ("root user", ["--set", "securityContext.runAsUser=0"], "at '/securityContext/runAsUser': minimum: got 0, want 1"),
    ("latest tag", ["--set", "image.tag=latest"], "at '/image/tag'"),
    ("min above max", ["--set", "worker.minReplicas=3", "--set", "worker.maxReplicas=2", "--set", "worker.replicas=2"],
     "worker.minReplicas (3) is greater than worker.maxReplicas (2)"),
    ("replicas outside min..max", ["--set", "worker.replicas=5"],
     "worker.replicas (5) must lie between worker.minReplicas (1) and worker.maxReplicas (1)"),
    ("more GPU workers than GPUs", ["--set", "config.train.num_workers=4"],
     "config.train.num_workers × gpus_per_worker = 4 GPUs, but the worker group can have at most 1"),
    ("data URI in config", ["--set", "config.data.uri=s3://other/x"], "set the dataset through storage.dataUri"),
    ("unknown submission mode", ["--set", "job.submissionMode=InteractiveMode"],
     "at '/job/submissionMode': value must be one of 'K8sJobMode', 'SidecarMode', 'HTTPMode'"),
    ("deadline beyond int32", ["--set", "job.activeDeadlineSeconds=3000000000"], "at '/job/activeDeadlineSeconds': maximum"),
    ("zero deadline", ["--set", "job.activeDeadlineSeconds=0"], "at '/job/activeDeadlineSeconds': minimum: got 0, want 1"),
    ("negative TTL", ["--set", "job.ttlSecondsAfterFinished=-1"], "at '/job/ttlSecondsAfterFinished': minimum: got -1"),
    ("TTL on a kept cluster", ["--set", "job.shutdownAfterJobFinishes=false"],
     "job.ttlSecondsAfterFinished (600) needs job.shutdownAfterJobFinishes=true"),
    ("misspelt submitter placement", ["--set", "job.submitter.nodeselector.pool=on-demand"],
     "at '/job/submitter': additional properties 'nodeselector' not allowed"),
    ("Kueue queue not a label value", ["--set", "kueue.queueName=Team_A"], "at '/kueue/queueName'"),
    ("Kueue with the autoscaler", ["--set", "kueue.queueName=gpu", "--set", "autoscaling.enabled=true"],
     "kueue.queueName (gpu) with autoscaling.enabled"),
    ("Kueue with a kept cluster", ["--set", "kueue.queueName=gpu", "--set", "job.shutdownAfterJobFinishes=false",
                                   "--set", "job.ttlSecondsAfterFinished=0"],
     "kueue.queueName (gpu) with job.shutdownAfterJobFinishes=false"),
    ("negative grace period", ["--set", "worker.terminationGracePeriodSeconds=-1"],
     "at '/worker/terminationGracePeriodSeconds': minimum: got -1, want 0"),
    ("spot values, min above max", ["-f", str(SPOT_VALUES), "--set", "worker.minReplicas=3"],
     "worker.minReplicas (3) is greater than worker.maxReplicas (2)"),
]


@pytest.mark.parametrize("what,args,message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_refused_with_a_readable_message(what, args, message, tmp_path):
    proc = kt.template(tmp_path, "-f", str(CHART / "ci" / "train-values.yaml"), *args)
    assert proc.returncode != 0, f"{what}: rendered anyway"
    assert message in proc.stderr, proc.stderr


def test_defaults_alone_are_refused_until_storage_is_given(tmp_path):
    proc = kt.template(tmp_path)
    assert proc.returncode != 0
    assert "at '/storage/dataUri'" in proc.stderr and "at '/storage/checkpointUri'" in proc.stderr
    ok = kt.template(tmp_path, "--set", "storage.dataUri=s3://bucket-a/data",
                     "--set", "storage.checkpointUri=s3://bucket-b/runs")
    assert ok.returncode == 0, ok.stderr


# --------------------------------------------------------------------------------------------- checkov

# Each is skipped by an annotation in k8s/vidpred/templates/_helpers.tpl ("vidpred.checkovSkips") with its reason.
JUSTIFIED_K8S_SKIPS = {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_35", "CKV_K8S_43", "CKV_K8S_38"}


def _checkov(args, tmp_path):
    proc = subprocess.run([kt.checkov(), *args, "-o", "json", "--compact", "--skip-download"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**kt.helm_env(tmp_path), "BC_SKIP_MAPPING": "TRUE"})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return kt.checkov_json(proc.stdout) if proc.stdout.strip().startswith(("{", "[")) else []


def test_checkov_passes_on_rendered_manifests_and_their_pods(rendered, spot_rendered, submission_rendered, tmp_path):
    """checkov's Kubernetes checks on every rendered object and on each pod KubeRay will make (lifted out of the
    RayJob/RayCluster, where checkov does not look): the ci values of each mode, the spot values in each mode,
    each submission mode. Each skipped check carries its reason in the chart."""
    docs = []
    for _, objects in [*rendered.values(), *spot_rendered.values(), *submission_rendered.values()]:
        docs += [o for o in objects if o["kind"] not in ("RayJob", "RayCluster")] + kt.lifted_pods(objects)
    for i, d in enumerate(docs):  # unique names across the modes
        d["metadata"]["name"] = f"{d['metadata']['name']}-{i}"
    kt.write_docs(tmp_path / "manifests.yaml", docs)
    reports = _checkov(["-d", str(tmp_path), "--framework", "kubernetes"], tmp_path)
    summary = {k: sum(r["summary"][k] for r in reports) for k in ("passed", "failed", "skipped")}
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}"
              for r in reports for c in r["results"]["failed_checks"]]
    assert failed == [], "\n".join(failed)
    assert summary["passed"] > 100, summary
    skipped = {c["check_id"] for r in reports for c in r["results"].get("skipped_checks", [])}
    assert skipped <= JUSTIFIED_K8S_SKIPS, skipped - JUSTIFIED_K8S_SKIPS
    for r in reports:
        for c in r["results"].get("skipped_checks", []):
            assert len(c["check_result"].get("suppress_comment", "").strip()) > 20, c["check_id"]
    print(f"checkov kubernetes: {summary} over {len(docs)} objects; skipped with reasons: {sorted(skipped)}")


def test_checkov_passes_on_the_dockerfile(tmp_path):
    reports = _checkov(["-f", str(REPO / "Dockerfile"), "--framework", "dockerfile"], tmp_path)
    failed = [f"{c['check_id']}: {c['check_name']}" for r in reports for c in r["results"]["failed_checks"]]
    assert failed == [], "\n".join(failed)
    summary = {k: sum(r["summary"][k] for r in reports) for k in ("passed", "failed", "skipped")}
    assert summary["passed"] >= 10, summary
    print(f"checkov dockerfile: {summary}")


# --------------------------------------------------------------------------------------------- Dockerfile

def test_hadolint_clean():
    proc = subprocess.run([kt.hadolint(), "--failure-threshold", "info", "--no-color", str(REPO / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in (REPO / "Dockerfile").read_text().splitlines():  # every ignore says why, on the same line
        if "hadolint ignore" in line:
            assert re.search(r"hadolint ignore=\S+\s+\S.{10,}", line), line


def test_dockerfile_pins_and_drops_root():
    text = (REPO / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    assert re.fullmatch(r"rayproject/ray:2\.60\.0-py311-cu\d+(@sha256:[0-9a-f]{64})?", base), base
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users[-1] == "10001:100"
    assert re.search(r"deepspeed==\$\{DEEPSPEED_VERSION\}", text) and "ARG DEEPSPEED_VERSION=0.19.8" in text
    assert re.search(r"torch==\$\{TORCH_VERSION\}", text)
    assert not re.search(r"^(ENV|ARG)\s+\S*(SECRET|PASSWORD|ACCESS_KEY|TOKEN)", text, re.M | re.I)
    # the chart's image user is the Dockerfile's
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f"{values['securityContext']['runAsUser']}:{values['securityContext']['runAsGroup']}" == users[-1]


def test_dockerignore_sends_only_what_the_image_needs():
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    copied = set(re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M))
    for src in " ".join(copied).split():
        assert f"!{src}" in lines or f"!{src}/" in lines, src


# --------------------------------------------------------------------------------------------- infra/

def test_iam_policy_is_least_privilege():
    """Data: read-only under its prefix; checkpoints: read/write under theirs; nothing account-wide."""
    policy = json.loads((REPO / "infra" / "cluster" / "iam-policy.json").read_text())
    statements = {s["Sid"]: s for s in policy["Statement"]}
    for s in statements.values():
        assert s["Effect"] == "Allow"
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        assert all(r.startswith("arn:aws:s3:::vidpred-") and r != "arn:aws:s3:::*" for r in resources), s
        assert not any(a.endswith("*") for a in s["Action"]), s
    assert statements["DataReadOnly"]["Action"] == ["s3:GetObject"]
    assert statements["DataReadOnly"]["Resource"].endswith("/bdd100k/*")
    assert {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"} <= set(statements["CheckpointReadWrite"]["Action"])
    for s in statements.values():  # anything that writes is confined to the checkpoint prefix
        if any(a.startswith(("s3:Put", "s3:Delete", "s3:Abort")) for a in s["Action"]):
            assert s["Resource"] == "arn:aws:s3:::vidpred-checkpoints/runs/*", s


def test_operator_values_and_irsa_service_account_fit_the_chart(tmp_path):
    ops = yaml.safe_load((REPO / "infra" / "cluster" / "kuberay-operator-values.yaml").read_text())
    major, minor, patch = map(int, ops["image"]["tag"].lstrip("v").split("."))
    assert (major, minor, patch) >= (1, 5, 1)  # spec.authOptions
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["networkPolicy"]["operatorNamespace"] == "kuberay-system"
    sa = yaml.safe_load((REPO / "infra" / "cluster" / "serviceaccount-irsa.yaml").read_text())
    trust = json.loads((REPO / "infra" / "cluster" / "irsa-trust-policy.json").read_text())
    (sub,) = [v for k, v in trust["Statement"][0]["Condition"]["StringEquals"].items() if k.endswith(":sub")]
    assert sub == f"system:serviceaccount:{sa['metadata']['namespace']}:{sa['metadata']['name']}"
    # the chart runs as that ServiceAccount and renders none of its own
    proc = kt.template(tmp_path, "-f", str(CHART / "ci" / "train-values.yaml"), "--set", "serviceAccount.create=false",
                       "--set", f"serviceAccount.name={sa['metadata']['name']}")
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert "ServiceAccount" not in {d["kind"] for d in docs}
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert all(tpl["spec"]["serviceAccountName"] == "vidpred-s3" for _, tpl in kt.pod_templates(job))


def test_infra_scripts_pass_shellcheck():
    scripts = [str(REPO / "infra" / "local" / f) for f in ("up.sh", "down.sh")]
    proc = subprocess.run([kt.shellcheck(), "--severity=style", *scripts], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
