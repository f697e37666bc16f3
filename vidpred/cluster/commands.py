"""``vidpred cluster submit|status|logs|delete``: parse, then one call into ``manifest`` / ``submit``.

Wired into the ``vidpred`` command by one line in ``vidpred/cli.py``: ``commands.add_parser(sub)``.
``main(argv, api=...)`` runs the same commands standalone (tests pass an ApiClient of their own).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vidpred import console
from vidpred.cluster import submit as k8s
from vidpred.cluster.manifest import config_values, render


def _namespace(args: argparse.Namespace) -> str:
    """``-n``, else the namespace of the kubeconfig's current context, else ``default``."""
    if args.namespace:
        return args.namespace
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(config_file=k8s.kubeconfig_path(args.kubeconfig))
        if args.context:
            active = next((c for c in contexts if c["name"] == args.context), active)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig at all (dry runs on a laptop): the Kubernetes default
        return "default"


def _api(args: argparse.Namespace):
    return args.api if getattr(args, "api", None) is not None else k8s.api_client(args.kubeconfig, args.context)


def _say(msg: str) -> None:
    print(f"[vidpred] {msg}", flush=True)


def _watch(args: argparse.Namespace, api, name: str, namespace: str) -> int:
    st = k8s.watch(api, name, namespace, interval=args.interval, timeout=args.timeout,
                   on_change=lambda s: print(s.summary(), flush=True))
    if st.kind == "RayJob":
        _say(f"rayjob {name}: job {st.status.get('jobStatus') or '-'}")
    return 0 if st.succeeded else 1


def _submit(args: argparse.Namespace) -> int:
    name = args.name or time.strftime("vidpred-%Y%m%d-%H%M%S")
    namespace = _namespace(args)
    manifest = render(name, namespace, values_files=args.values, sets=args.set,
                      values=config_values(args.config, args.experiment), mode=args.mode,
                      chart=args.chart, helm=args.helm)
    if args.dry_run:
        sys.stdout.write(manifest.text)
        return 0
    api = _api(args)
    k8s.submit(api, manifest, on_created=_say)
    _say(f"follow it: vidpred cluster status {name} -n {namespace} --watch; "
         f"vidpred cluster logs {name} -n {namespace} --follow")
    if args.wait:
        return _watch(args, api, name, namespace)
    return 0


def _status(args: argparse.Namespace) -> int:
    namespace, api = _namespace(args), _api(args)
    if args.watch:
        return _watch(args, api, args.name, namespace)
    st = k8s.status(api, args.name, namespace)
    print(st.summary())
    return 0


def _logs(args: argparse.Namespace) -> int:
    namespace, api = _namespace(args), _api(args)
    for line in k8s.logs(api, args.name, namespace, head=args.head, follow=args.follow, tail=args.tail):
        print(line, flush=args.follow)
    return 0


def _delete(args: argparse.Namespace) -> int:
    namespace, api = _namespace(args), _api(args)
    k8s.delete(api, args.name, namespace, on_deleted=_say)
    return 0


def _run(args: argparse.Namespace) -> int:
    with k8s.reaching():  # an unreachable API server: one line naming it, not urllib3's chained tracebacks
        return args.cluster_func(args)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace, else 'default'")
    p.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config (in a pod: its service account)")
    p.add_argument("--context", help="kubeconfig context to use")


def _watch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=float, default=10.0, help="seconds between polls (default 10)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``cluster`` (with submit, status, logs, delete) on the ``vidpred`` command's subparsers."""
    c = subparsers.add_parser("cluster", help="run on Kubernetes through KubeRay (the Helm chart in k8s/vidpred)",
                              description="Render the vidpred Helm chart and create, watch, read the logs of "
                                          "or delete its RayJob / RayCluster with the Kubernetes API.")
    sub = c.add_subparsers(dest="cluster_command", required=True)

    s = sub.add_parser("submit", help="render the chart and create its objects (RayJob, ConfigMap, ServiceAccount)")
    s.add_argument("--name", help="RayJob / RayCluster name (default vidpred-<time>)")
    s.add_argument("--mode", choices=["train", "tune", "cluster"], help="chart mode (default: the values' mode, train)")
    s.add_argument("--config", type=Path, help="a vidpred config YAML (as for vidpred train --config); its data.uri "
                                               "and train.storage_path become storage.dataUri / checkpointUri")
    s.add_argument("--experiment", type=Path, help="mode tune: the experiment YAML for vidpred tune")
    s.add_argument("-f", "--values", action="append", default=[], type=Path, metavar="FILE",
                   help="chart values file (repeatable; later wins)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="chart value, helm --set syntax, e.g. worker.replicas=2 (repeatable)")
    s.add_argument("--dry-run", action="store_true", help="print the manifest and create nothing")
    s.add_argument("--wait", action="store_true", help="then watch until the job finishes (exit 1 unless it succeeded)")
    s.add_argument("--chart", type=Path, help="chart directory (default: the one shipped with vidpred)")
    s.add_argument("--helm", help="helm binary (default: $VIDPRED_HELM or helm on PATH)")
    _common(s)
    _watch_args(s)
    s.set_defaults(cluster_func=_submit)

    st = sub.add_parser("status", help="the RayJob's (or RayCluster's) state")
    st.add_argument("name")
    st.add_argument("--watch", action="store_true", help="poll until it finishes (exit 1 unless it succeeded)")
    _common(st)
    _watch_args(st)
    st.set_defaults(cluster_func=_status)

    lg = sub.add_parser("logs", help="the driver's log (the job submitter's pod, or in SidecarMode its container in "
                                     "the head pod), or the head pod's with --head")
    lg.add_argument("name")
    lg.add_argument("--follow", "-F", action="store_true", help="keep streaming until the pod ends")
    lg.add_argument("--head", action="store_true", help="the head pod's ray-head container instead")
    lg.add_argument("--tail", type=int, default=None, help="only the last N lines")
    _common(lg)
    lg.set_defaults(cluster_func=_logs)

    d = sub.add_parser("delete", help="delete the RayJob / RayCluster, its pods, ConfigMap and ServiceAccount")
    d.add_argument("name")
    _common(d)
    d.set_defaults(cluster_func=_delete)

    c.set_defaults(func=_run)
    return c


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidpred")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p


def main(argv: list[str] | None = None, *, api=None) -> int:
    """``vidpred cluster …`` on its own; ``api``: an ApiClient to use instead of the kubeconfig's."""
    debug, argv = console.debug_wanted(sys.argv[1:] if argv is None else list(argv))
    args = parser().parse_args(argv)
    args.api = api
    return console.guarded(lambda: args.func(args), debug)
