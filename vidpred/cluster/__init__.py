"""vidpred on Kubernetes: the RayJob / RayCluster manifest and the kubernetes-client submitter.

One source of truth for the manifest: the Helm chart in ``k8s/vidpred`` (shipped inside this package as
``vidpred/cluster/chart``). ``manifest`` renders it with ``helm template`` — exactly what ``helm install``
would create — and checks the vidpred config it carries; ``submit`` creates, watches, reads the logs of and
deletes those objects through the ``kubernetes`` client; ``commands`` is the ``vidpred cluster …`` CLI.
"""

from vidpred.cluster.manifest import ClusterError, Manifest, render

__all__ = ["ClusterError", "Manifest", "render"]
