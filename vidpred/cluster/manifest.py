"""The objects ``vidpred cluster submit`` creates: the Helm chart rendered by ``helm template``.

The chart (``k8s/vidpred``, here as ``vidpred/cluster/chart``) is the only description of the RayJob /
RayCluster, its ConfigMap and its ServiceAccount; this module never builds a manifest of its own, so the chart
and the submitter cannot drift. What it adds: finding the chart and helm, turning a vidpred config file into
chart values, and validating the vidpred config that ends up in the ConfigMap with ``vidpred.config`` — the
same check the pod runs at start, done before anything reaches the cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidpred import config as config_mod
from vidpred.config import UserError

CHART_ENV = "VIDPRED_CHART"
HELM_ENV = "VIDPRED_HELM"
RAY_GROUP, RAY_VERSION = "ray.io", "v1"
RAY_PLURALS = {"RayJob": "rayjobs", "RayCluster": "rayclusters"}
# DNS-1123 label, and short: KubeRay derives pod and service names from it (the chart cuts at 40).
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
HELM_TIMEOUT_S = 60


class ClusterError(UserError, RuntimeError):
    """Something about the cluster request is wrong; the message says what and what to do."""


# --------------------------------------------------------------------------------------------- locating

def chart_dir(override: str | os.PathLike | None = None) -> Path:
    """The chart: ``override``, else ``$VIDPRED_CHART``, else the one shipped in this package."""
    candidates = [Path(override)] if override else []
    if os.environ.get(CHART_ENV):
        candidates.append(Path(os.environ[CHART_ENV]))
    here = Path(__file__).resolve().parent
    candidates += [here / "chart", here.parents[1] / "k8s" / "vidpred"]
    for c in candidates if not override else candidates[:1]:
        if (c / "Chart.yaml").is_file():
            return c.resolve()
    raise ClusterError(f"no Helm chart at {candidates[0]} (expected Chart.yaml there); "
                       f"pass --chart DIR or set {CHART_ENV}")


def helm_binary(override: str | os.PathLike | None = None) -> str:
    """``override``, else ``$VIDPRED_HELM``, else ``helm`` on PATH (helm 3.11+ or 4; tried: 3.17.2, 4.1.4)."""
    wanted = override or os.environ.get(HELM_ENV) or "helm"
    found = shutil.which(str(wanted))
    if found is None:
        raise ClusterError(
            f"helm not found ({wanted!r}): vidpred renders its Helm chart with `helm template`. Install helm "
            f"(https://helm.sh/docs/intro/install/) or point {HELM_ENV} / --helm at the binary")
    return found


# --------------------------------------------------------------------------------------------- rendering

@dataclass
class Manifest:
    """The rendered chart: its YAML text and the objects in it, in the order helm printed them."""
    name: str
    namespace: str
    text: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ray_object(self) -> dict[str, Any]:
        """The RayJob (mode train/tune) or the RayCluster (mode cluster)."""
        for obj in self.objects:
            if obj.get("kind") in RAY_PLURALS:
                return obj
        raise ClusterError("the chart rendered no RayJob or RayCluster")

    @property
    def kind(self) -> str:
        return self.ray_object["kind"]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def vidpred_config(self) -> dict[str, Any]:
        """The vidpred config the pods read (/etc/vidpred/config.yaml), as data."""
        for cm in self.of_kind("ConfigMap"):
            if "config.yaml" in (cm.get("data") or {}):
                return yaml.safe_load(cm["data"]["config.yaml"]) or {}
        raise ClusterError("the chart rendered no ConfigMap with config.yaml")


def config_values(config_file: str | os.PathLike | None, experiment_file: str | os.PathLike | None) -> dict:
    """Chart values from a vidpred config file (the one ``vidpred train --config`` takes) and a tune experiment.

    ``data.uri`` and ``train.storage_path`` in the config become ``storage.dataUri`` / ``storage.checkpointUri``
    (the chart owns those two); values files and ``--set`` given to ``submit`` still win over them.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        raw = _read_yaml(config_file, "--config")
        data, train = dict(raw.get("data") or {}), dict(raw.get("train") or {})
        storage = {}
        if data.get("uri"):
            storage["dataUri"] = data.pop("uri")
        if train.get("storage_path"):
            storage["checkpointUri"] = train.pop("storage_path")
        data.pop("uri", None)
        train.pop("storage_path", None)
        cfg = {k: v for k, v in raw.items() if k not in ("data", "train")}
        if data:
            cfg["data"] = data
        if train:
            cfg["train"] = train
        values["config"] = cfg
        if storage:
            values["storage"] = storage
    if experiment_file is not None:
        values["tune"] = {"experiment": _read_yaml(experiment_file, "--experiment")}
    return values


def _read_yaml(path: str | os.PathLike, flag: str) -> dict:
    try:
        return config_mod.read_yaml_mapping(path, flag)
    except config_mod.ConfigError as exc:
        raise ClusterError(str(exc)) from None


def render(name: str, namespace: str = "default", *, values_files: list[str | os.PathLike] = (),
           sets: list[str] = (), values: dict | None = None, mode: str | None = None,
           chart: str | os.PathLike | None = None, helm: str | None = None,
           kube_version: str | None = None, validate_config: bool = True) -> Manifest:
    """``helm template NAME CHART -n NAMESPACE -f <values> -f FILE… --set K=V…`` → :class:`Manifest`.

    Precedence (later wins), as with ``helm install``: the chart's values.yaml < ``values`` (built from
    ``--config`` / ``--experiment``) < ``values_files`` < ``sets`` < ``mode``. The release name is the object
    name (``fullnameOverride``), so ``vidpred cluster status NAME`` finds it.
    """
    if not NAME_RE.match(name):
        raise ClusterError(f"name {name!r}: use 1-40 lowercase letters, digits and '-', starting with a letter "
                           "and not ending with '-' (it names the RayJob, its pods and services)")
    for f in values_files:
        if not Path(f).is_file():
            raise ClusterError(f"-f {str(f)!r}: file does not exist")
    chart_path, helm_path = chart_dir(chart), helm_binary(helm)
    with tempfile.TemporaryDirectory(prefix="vidpred-helm-") as tmp:
        generated = Path(tmp) / "vidpred-values.yaml"
        generated.write_text(yaml.safe_dump({**(values or {})}, sort_keys=False))
        cmd = [helm_path, "template", name, str(chart_path), "--namespace", namespace, "-f", str(generated)]
        for f in values_files:
            cmd += ["-f", str(f)]
        for s in sets:
            cmd += ["--set", s]
        cmd += ["--set-string", f"fullnameOverride={name}"]
        if mode is not None:
            cmd += ["--set-string", f"mode={mode}"]
        if kube_version:
            cmd += ["--kube-version", kube_version]
        env = {**os.environ, "HELM_CACHE_HOME": str(Path(tmp) / "cache"),
               "HELM_CONFIG_HOME": str(Path(tmp) / "config"), "HELM_DATA_HOME": str(Path(tmp) / "data")}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HELM_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"helm template did not finish in {HELM_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise ClusterError("the chart refused these values:\n" + _helm_error(proc.stderr or proc.stdout))
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    manifest = Manifest(name=name, namespace=namespace, text=proc.stdout, objects=objects)
    manifest.ray_object  # noqa: B018 - raises when there is none
    if validate_config:
        check_config(manifest.vidpred_config())
    return manifest


def _helm_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("Use --debug")]
    return "\n".join("  " + ln.removeprefix("Error: ") for ln in lines)


def check_config(raw: dict[str, Any]) -> config_mod.Config:
    """Validate the config the pods will read, as ``vidpred train --config`` does there.

    A data URI that is a path (a volume in the pods) cannot be checked from here and is left to the pod.
    """
    probe = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy of plain data
    data = probe.get("data") if isinstance(probe.get("data"), dict) else None
    if data and isinstance(data.get("uri"), str) and not config_mod.is_remote_uri(data["uri"]):
        data["uri"] = None
    try:
        return config_mod.validate(probe)
    except config_mod.ConfigError as exc:
        raise ClusterError(f"the vidpred config for the cluster is not valid ({exc})") from None
