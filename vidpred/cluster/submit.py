"""Create, watch, read the logs of and delete the rendered objects with the ``kubernetes`` client.

Every function takes a ``kubernetes.client.ApiClient``; :func:`api_client` makes one from a kubeconfig (or the
pod's service account). The tests give them an ApiClient whose HTTP layer records requests and returns canned
responses, so the URLs and bodies below are the client's own; no live cluster was used to write them.

Objects and calls:
  ServiceAccount, ConfigMap   CoreV1Api  (/api/v1/namespaces/NS/serviceaccounts, …/configmaps)
  NetworkPolicy               NetworkingV1Api  (/apis/networking.k8s.io/v1/namespaces/NS/networkpolicies)
  RayJob, RayCluster          CustomObjectsApi  (/apis/ray.io/v1/namespaces/NS/rayjobs, …/rayclusters)
  driver log                  RayJob submissionMode K8sJobMode: the pod KubeRay's submitter Job runs (label
                              batch.kubernetes.io/job-name=NAME, container ray-job-submitter); SidecarMode: the
                              head pod's ray-job-submitter container; HTTPMode: no pod has it (ray job logs);
                              with head=True the head pod's ray-head container
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vidpred import config as config_mod
from vidpred.cluster.manifest import RAY_GROUP, RAY_PLURALS, RAY_VERSION, ClusterError, Manifest

# KubeRay's RayJob.status.jobDeploymentStatus values after which nothing more happens, and the Ray job states.
FINAL_DEPLOYMENT = {"Complete", "Failed", "Suspended", "ValidationFailed"}
FINAL_JOB = {"SUCCEEDED", "FAILED", "STOPPED"}
SUBMITTER_CONTAINER = "ray-job-submitter"
HEAD_CONTAINER = "ray-head"
# The label that queues a RayJob / RayCluster in Kueue (chart value kueue.queueName). Kueue keeps such an
# object suspended until it admits it: "Suspended" then means queued, not finished.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def kubeconfig_path(explicit: str | None = None) -> str | None:
    """``explicit``, else ``$KUBECONFIG`` read now (the client reads it once, at import), else None (the
    client's default, ~/.kube/config). A ``:``-separated list is merged, as kubectl does."""
    return explicit or os.environ.get("KUBECONFIG") or None


def api_client(kubeconfig: str | None = None, context: str | None = None):
    """An ApiClient from ``kubeconfig`` (default ``$KUBECONFIG`` / ``~/.kube/config``) and ``context``, or,
    inside a pod, from its service account."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    kubeconfig = kubeconfig_path(kubeconfig)
    check_kubeconfig(kubeconfig)
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (TypeError, ValueError, AttributeError) as exc:  # a file the client cannot walk, e.g. a bad entry
        raise ClusterError(f"kubeconfig {kubeconfig or '~/.kube/config'}: not a usable kubeconfig ({exc}); "
                           "check it with `kubectl config view`") from None
    except (ConfigException, FileNotFoundError) as kube_exc:
        if context or (kubeconfig and os.path.exists(kubeconfig.split(os.pathsep)[0])):
            which = f" context {context!r}" if context else ""
            raise ClusterError(f"cannot use the kubeconfig{which}: {kube_exc}") from None
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        except ConfigException:
            raise ClusterError("no Kubernetes credentials: no kubeconfig ($KUBECONFIG or ~/.kube/config) and "
                               f"not running in a pod ({kube_exc})") from None


def check_kubeconfig(kubeconfig: str | None) -> None:
    """Refuse, naming the file, a kubeconfig that is not YAML or whose top level is not a mapping (the
    client would fail with a TypeError deep inside); a missing file is left to the client's own search."""
    import yaml

    for path in (kubeconfig or os.path.expanduser("~/.kube/config")).split(os.pathsep):
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ClusterError(f"kubeconfig {path}: not valid YAML ({config_mod.yaml_problem(exc)})" if isinstance(
                exc, yaml.YAMLError) else f"kubeconfig {path}: not UTF-8 text") from None
        except OSError as exc:
            raise ClusterError(f"kubeconfig {path}: cannot be read ({exc.strerror})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ClusterError(f"kubeconfig {path}: its top level is a {type(loaded).__name__}, not a mapping "
                               "(apiVersion, clusters, users, contexts); point --kubeconfig or $KUBECONFIG at "
                               "a kubeconfig file")


@contextlib.contextmanager
def reaching():
    """Turn a transport failure (refused connection, unknown host, TLS, timeout: urllib3 raises them after its
    retries) into one ClusterError naming the API server; HTTP answers are handled where they are made."""
    import urllib3

    try:
        yield
    except urllib3.exceptions.HTTPError as exc:
        pool = getattr(exc, "pool", None)
        server = f"{pool.scheme}://{pool.host}:{pool.port}" if pool is not None else "the Kubernetes API server"
        reason = getattr(exc, "reason", None) or exc
        raise ClusterError(f"cannot reach the Kubernetes API server {server}: {reason}; check the kubeconfig's "
                           "server and context (kubectl cluster-info), the network or VPN") from None


def _apis(api):
    from kubernetes import client

    return client.CoreV1Api(api), client.CustomObjectsApi(api)


# The plain objects the chart renders beside the Ray object: kind → (API class, method suffix).
PLAIN_KINDS = {"ServiceAccount": ("CoreV1Api", "service_account"),
               "ConfigMap": ("CoreV1Api", "config_map"),
               "NetworkPolicy": ("NetworkingV1Api", "network_policy")}


def _verb(api, kind: str, verb: str):
    """e.g. _verb(api, "ConfigMap", "create") → CoreV1Api(api).create_namespaced_config_map"""
    from kubernetes import client

    cls, suffix = PLAIN_KINDS[kind]
    return getattr(getattr(client, cls)(api), f"{verb}_namespaced_{suffix}")


def _api_error(exc, what: str) -> ClusterError:
    import json

    message = exc.reason or ""
    try:
        message = json.loads(exc.body or "{}").get("message") or message
    except (ValueError, AttributeError):
        pass
    hint = {401: "check your kubeconfig credentials", 403: "your account may not do this in that namespace",
            404: "is the KubeRay operator installed (its CRDs), and the namespace right?"}.get(exc.status, "")
    return ClusterError(f"{what}: HTTP {exc.status} {message}" + (f" — {hint}" if hint else ""))


# --------------------------------------------------------------------------------------------- reading

def get_ray_object(api, name: str, namespace: str) -> dict[str, Any] | None:
    """The RayJob called ``name``, else the RayCluster, else None."""
    from kubernetes.client.exceptions import ApiException

    _, custom = _apis(api)
    for plural in RAY_PLURALS.values():
        try:
            return custom.get_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise _api_error(exc, f"reading {plural}/{name} in namespace {namespace}") from None
    return None


@dataclass
class Status:
    kind: str
    name: str
    namespace: str
    status: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def queue(self) -> str | None:
        """The Kueue LocalQueue the object was submitted to, if any."""
        return self.labels.get(KUEUE_QUEUE_LABEL) or None

    @property
    def queued(self) -> bool:
        """Suspended by Kueue, waiting for admission (or re-admission after Kueue preempted it)."""
        suspended = (self.status.get("jobDeploymentStatus") in ("Suspending", "Suspended") if self.kind == "RayJob"
                     else self.status.get("state") == "suspended")
        return suspended and self.queue is not None

    @property
    def submission_mode(self) -> str:
        """A RayJob's spec.submissionMode (KubeRay's default when absent: K8sJobMode)."""
        return self.spec.get("submissionMode") or "K8sJobMode"

    @property
    def finished(self) -> bool:
        s = self.status
        if self.queued:
            return False
        if self.kind == "RayJob":
            return s.get("jobDeploymentStatus") in FINAL_DEPLOYMENT
        return s.get("state") in {"failed", "suspended"}

    @property
    def succeeded(self) -> bool:
        if self.kind == "RayJob":
            return self.status.get("jobStatus") == "SUCCEEDED"
        return self.status.get("state") == "ready"

    def _queue_lines(self) -> list[str]:
        if not self.queue:
            return []
        return [f"  kueue queue: {self.queue}" + (" (suspended until Kueue admits it)" if self.queued else "")]

    def summary(self) -> str:
        s = self.status
        if self.kind == "RayJob":
            lines = [f"rayjob {self.name} (namespace {self.namespace}): deployment "
                     f"{s.get('jobDeploymentStatus') or 'Pending'}, job {s.get('jobStatus') or '-'}"]
            for key, label in (("rayClusterName", "cluster"), ("jobId", "ray job id"),
                               ("dashboardURL", "dashboard"), ("startTime", "started"), ("endTime", "ended"),
                               ("reason", "reason"), ("message", "message")):
                if s.get(key):
                    lines.append(f"  {label}: {s[key]}")
            lines += self._queue_lines()
            return "\n".join(lines)
        lines = [f"raycluster {self.name} (namespace {self.namespace}): {s.get('state') or 'pending'}, workers "
                 f"{s.get('readyWorkerReplicas', 0)}/{s.get('desiredWorkerReplicas', 0)} ready"]
        head = s.get("head") or {}
        if head.get("serviceIP") or head.get("podIP"):
            lines.append(f"  head: {head.get('serviceIP') or head.get('podIP')}")
        if s.get("reason"):
            lines.append(f"  reason: {s['reason']}")
        lines += self._queue_lines()
        return "\n".join(lines)


def status(api, name: str, namespace: str) -> Status:
    obj = get_ray_object(api, name, namespace)
    if obj is None:
        raise ClusterError(f"no RayJob or RayCluster {name!r} in namespace {namespace!r}")
    return Status(kind=obj["kind"], name=name, namespace=namespace, status=obj.get("status") or {},
                  spec=obj.get("spec") or {}, labels=(obj.get("metadata") or {}).get("labels") or {})


def watch(api, name: str, namespace: str, *, interval: float = 10.0, timeout: float | None = None,
          on_change: Callable[[Status], None] = lambda s: None, sleep: Callable[[float], None] = time.sleep) -> Status:
    """Poll until the RayJob finishes (or the RayCluster is ready / failed); ``on_change`` sees each new state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        st = status(api, name, namespace)
        key = (st.status.get("jobDeploymentStatus"), st.status.get("jobStatus"), st.status.get("state"))
        if key != last:
            on_change(st)
            last = key
        if st.finished or (st.kind == "RayCluster" and st.succeeded):
            return st
        if deadline is not None and time.monotonic() >= deadline:
            raise ClusterError(f"{st.kind.lower()} {name} not finished after {timeout:g} s: {st.summary()}")
        sleep(interval)


# --------------------------------------------------------------------------------------------- writing

def submit(api, manifest: Manifest, *, on_created: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Create the manifest's objects: ServiceAccount, ConfigMap, NetworkPolicy, then the RayJob / RayCluster,
    then make the others owned by it (``kubectl delete rayjob NAME`` then removes them too). Returns the Ray
    object as the API server returned it. Refuses to touch anything when a RayJob/RayCluster of that name exists."""
    from kubernetes.client.exceptions import ApiException

    _, custom = _apis(api)
    ns, ray = manifest.namespace, manifest.ray_object
    name, kind = ray["metadata"]["name"], ray["kind"]
    existing = get_ray_object(api, name, ns)
    if existing is not None:
        raise ClusterError(f"{existing['kind'].lower()} {name!r} already exists in namespace {ns!r}: delete it "
                           f"first (vidpred cluster delete {name} -n {ns}) or submit under another --name")
    owned: list[tuple[str, str]] = []
    for obj in manifest.objects:
        okind, oname = obj["kind"], obj["metadata"]["name"]
        if okind in RAY_PLURALS:
            continue
        if okind not in PLAIN_KINDS:
            raise ClusterError(f"the chart rendered a {okind}, which vidpred cluster submit does not create")
        try:
            _verb(api, okind, "create")(ns, obj)
            owned.append((okind, oname))
            on_created(f"{okind.lower()}/{oname} created")
        except ApiException as exc:
            if exc.status != 409:
                raise _api_error(exc, f"creating {okind.lower()}/{oname}") from None
            if okind == "ServiceAccount":  # may be shared or annotated by an admin: leave it alone
                on_created(f"{okind.lower()}/{oname} exists, used as is")
                continue
            # ours by name (<name>-config, <name>): left over from an earlier submit of the same name
            try:
                _verb(api, okind, "replace")(oname, ns, obj)
            except ApiException as exc2:
                raise _api_error(exc2, f"replacing {okind.lower()}/{oname}") from None
            owned.append((okind, oname))
            on_created(f"{okind.lower()}/{oname} replaced")
    try:
        created = custom.create_namespaced_custom_object(RAY_GROUP, RAY_VERSION, ns, RAY_PLURALS[kind], ray)
    except ApiException as exc:
        raise _api_error(exc, f"creating {kind.lower()}/{name}") from None
    on_created(f"{kind.lower()}/{name} created")
    uid = (created.get("metadata") or {}).get("uid")
    if uid:
        owner = {"metadata": {"ownerReferences": [{"apiVersion": f"{RAY_GROUP}/{RAY_VERSION}", "kind": kind,
                                                   "name": name, "uid": uid, "blockOwnerDeletion": False}]}}
        for okind, oname in owned:
            try:
                _verb(api, okind, "patch")(oname, ns, owner)
            except ApiException as exc:
                raise _api_error(exc, f"making {okind.lower()}/{oname} owned by {kind.lower()}/{name}") from None
    return created


def delete(api, name: str, namespace: str, *, on_deleted: Callable[[str], None] = lambda s: None) -> list[str]:
    """Delete the RayJob / RayCluster ``name`` (its pods go with it) and the ConfigMap, ServiceAccount and
    NetworkPolicy the chart made for it (by label: also those of a ``helm install`` of that release name).
    Returns what was deleted; raises when there was no Ray object of that name."""
    from kubernetes.client.exceptions import ApiException

    _, custom = _apis(api)
    obj = get_ray_object(api, name, namespace)
    if obj is None:
        raise ClusterError(f"no RayJob or RayCluster {name!r} in namespace {namespace!r}")
    kind = obj["kind"]
    done = []
    try:
        custom.delete_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAY_PLURALS[kind], name,
                                               propagation_policy="Background")
    except ApiException as exc:
        raise _api_error(exc, f"deleting {kind.lower()}/{name}") from None
    done.append(f"{kind.lower()}/{name}")
    on_deleted(f"{kind.lower()}/{name} deleted")
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/name=vidpred"
    for okind in PLAIN_KINDS:
        try:
            for item in _verb(api, okind, "list")(namespace, label_selector=selector).items:
                try:
                    _verb(api, okind, "delete")(item.metadata.name, namespace)
                except ApiException as exc:
                    if exc.status != 404:  # 404: the garbage collector was faster
                        raise
                done.append(f"{okind.lower()}/{item.metadata.name}")
                on_deleted(f"{okind.lower()}/{item.metadata.name} deleted")
        except ApiException as exc:
            raise _api_error(exc, f"deleting the {okind}s of {name}") from None
    return done


# --------------------------------------------------------------------------------------------- logs

def log_pod(api, name: str, namespace: str, *, head: bool = False) -> tuple[str, str]:
    """(pod, container) holding the driver's output: a RayJob's submitter — its own pod in K8sJobMode, a
    container of the head pod in SidecarMode — or the head pod's ray-head container (``head=True``, and
    always for a RayCluster). HTTPMode has no submitter: refused with where the log is instead."""
    from kubernetes.client.exceptions import ApiException

    core, _ = _apis(api)
    st = status(api, name, namespace)
    submitter = st.kind == "RayJob" and not head
    if submitter and st.submission_mode not in ("K8sJobMode", "SidecarMode"):
        job_id = st.status.get("jobId") or "<ray job id>"
        raise ClusterError(
            f"rayjob {name} is submitted in {st.submission_mode}: the operator submits it over the dashboard's "
            f"API and no pod prints the driver's log. Read it through the dashboard (kubectl -n {namespace} "
            f"port-forward service/{name}-head-svc 8265:8265, then ray job logs {job_id} --address "
            "http://127.0.0.1:8265 --follow, with RAY_AUTH_TOKEN set under token auth), or the head pod's own "
            "log with --head")
    if st.kind == "RayCluster" or head or st.submission_mode == "SidecarMode":
        cluster = name if st.kind == "RayCluster" else st.status.get("rayClusterName")
        if not cluster:
            raise ClusterError(f"rayjob {name} has no RayCluster yet ({st.summary()})")
        selectors = [f"ray.io/cluster={cluster},ray.io/node-type=head"]
        container = SUBMITTER_CONTAINER if submitter else HEAD_CONTAINER
    else:
        selectors = [f"batch.kubernetes.io/job-name={name}", f"job-name={name}"]
        container = SUBMITTER_CONTAINER
    for selector in selectors:
        try:
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        except ApiException as exc:
            raise _api_error(exc, f"listing pods ({selector})") from None
        if pods:
            newest = max(pods, key=lambda p: p.metadata.creation_timestamp.timestamp()
                         if p.metadata.creation_timestamp else 0.0)
            return newest.metadata.name, container
    raise ClusterError(f"no pod yet for the logs of {st.kind.lower()} {name} ({st.summary().splitlines()[0]}); "
                       "KubeRay starts the job submitter once the head is ready: try again, or --head")


def logs(api, name: str, namespace: str, *, head: bool = False, follow: bool = False,
         tail: int | None = None) -> Iterator[str]:
    """Lines of the driver's log (see :func:`log_pod`); with ``follow`` until the pod ends."""
    from kubernetes.client.exceptions import ApiException

    core, _ = _apis(api)
    pod, container = log_pod(api, name, namespace, head=head)
    try:
        resp = core.read_namespaced_pod_log(pod, namespace, container=container, follow=follow,
                                            tail_lines=tail, _preload_content=False)
    except ApiException as exc:
        raise _api_error(exc, f"reading the log of pod {pod}") from None
    try:
        buffer = b""
        for chunk in resp.stream(amt=None, decode_content=False):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace")
        if buffer:
            yield buffer.decode("utf-8", errors="replace")
    finally:
        resp.release_conn()
