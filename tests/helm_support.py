"""The Helm chart rendered by Helm itself, for the deployment tests (tests/unit/deploy).

Helm runs in-process through ``helm-python-sdk`` (Helm 4's own Go SDK as a library: the real template
engine, sprig functions and ``values.schema.json`` validation), offline; ``kubernetes-validate`` holds
the Kubernetes API's JSON schemas.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

try:
    import helm_python as helm
    import kubernetes_validate
except ImportError:  # pragma: no cover - the test extra installs both
    helm = kubernetes_validate = None

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "aiaas"
KUBE_VERSION = "1.33.0"
RELEASE, NAMESPACE = "aiaas", "aiaas"
BASE: dict[str, Any] = {"secret": {"existingSecret": "aiaas-env"}}
# Custom resources of operators the chart integrates with: not in the Kubernetes schemas.
CRDS = {"ServiceMonitor", "Certificate", "ExternalSecret", "Rollout"}
# The values that render every optional object of the chart (mode split).
LINT_VALUES = CHART / "ci" / "lint-values.yaml"
# A canary of the streamer, as an operator would start one (merged over other values).
CANARY: dict[str, Any] = {"streamer": {"canary": {"enabled": True, "image": {"tag": "0.2.0"}}}}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, as Helm merges a values file over another."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(values: dict[str, Any], *, chart: Path | None = None, namespace: str = NAMESPACE,
           release: str = RELEASE) -> list[dict[str, Any]]:
    """Every manifest the chart renders for ``values`` (as ``helm template`` would, offline)."""
    loaded = helm.Chart.load(chart or CHART)
    try:
        files = loaded.render(values=values, name=release, namespace=namespace, is_install=True)
    finally:
        loaded.close()
    return [doc for path, text in sorted(files.items()) if path.endswith((".yaml", ".yml"))
            for doc in yaml.safe_load_all(text) if doc]


def validate(doc: dict[str, Any]) -> None:
    """Validate one manifest against the Kubernetes API's schema, strictly (custom resources: their
    identity only)."""
    if doc["kind"] in CRDS:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        return
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def of_kind(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The manifests of one kind, by name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def role_of(deployment: dict[str, Any]) -> str:
    """The aiaas role a Deployment runs: the argument after ``--role``."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    return str(args[args.index("--role") + 1])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether an equality selector (``matchLabels``, a Service's ``selector``) matches ``labels``."""
    return bool(selector) and selector.items() <= labels.items()


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    """The labels of the pods a Deployment or Job makes."""
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def container_ports(workload: dict[str, Any]) -> dict[str, int]:
    """The named container ports of a workload's pods."""
    return {p["name"]: p["containerPort"] for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])}
