"""The Helm chart, rendered by Helm itself and checked by tools: valid Kubernetes in every mode (split,
single, the streamer's canary), every reference between its objects resolved, its values schema
enforced, and NetworkPolicies that allow exactly what each workload serves and reaches.

Helm runs in-process through ``helm-python-sdk`` (Helm's own Go SDK as a library: the real template
engine, sprig functions and ``values.schema.json`` validation), offline. Every rendered manifest is then
validated against the Kubernetes API's JSON schemas (``kubernetes-validate``), strictly (an unknown
field fails). The expected network allows are computed from the code, not from the chart: the ports
the roles listen on (``Settings``), the services each role depends on (the readiness checks of
``entrypoints/bootstrap.py``) and the roles that role ``all`` runs (``entrypoints/serve.py``).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from aiaas.entrypoints.bootstrap import ROLE_DEPENDENCIES
from aiaas.entrypoints.serve import ROLES_OF
from aiaas.kernel.config import load_settings
from helm_support import (
    BASE,
    CANARY,
    LINT_VALUES,
    RELEASE,
    container_ports,
    helm,
    kubernetes_validate,
    of_kind,
    pod_labels,
    render,
    role_of,
    selects,
    validate,
)
from helm_support import merge as _merge
from support import missing_tool

_LINT = yaml.safe_load(LINT_VALUES.read_text())
_NGINX = {"streamer": {"canary": {"trafficRouting": "nginx", "header": "X-Aiaas-Canary"}}}
MODES = {
    "defaults": BASE,
    "everything on": _LINT,
    "single": _merge(BASE, {"mode": "single"}),
    "single, everything on": yaml.safe_load((LINT_VALUES.parent / "single-values.yaml").read_text()),
    "single, split's everything on": _merge(_LINT, {"mode": "single"}),
    "canary by replicas": _merge(_LINT, CANARY),
    "canary by nginx": yaml.safe_load((LINT_VALUES.parent / "canary-values.yaml").read_text()),
    "canary by nginx, everything on": _merge(_merge(_LINT, CANARY), _NGINX),
}
# The Deployments (by component) each mode runs.
WORKLOADS = {
    "defaults": {"api", "streamer", "worker"},
    "everything on": {"api", "streamer", "worker"},
    "single": {"all"},
    "single, everything on": {"all"},
    "single, split's everything on": {"all"},
    "canary by replicas": {"api", "streamer", "worker", "streamer-canary"},
    "canary by nginx": {"api", "streamer", "worker", "streamer-canary"},
    "canary by nginx, everything on": {"api", "streamer", "worker", "streamer-canary"},
}


def test_every_values_file_of_ci_is_a_mode_here() -> None:
    files = {p.name for p in LINT_VALUES.parent.glob("*-values.yaml")}
    assert files == {"lint-values.yaml", "single-values.yaml", "canary-values.yaml"}


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    if helm is None or kubernetes_validate is None:
        missing_tool("helm-python-sdk and kubernetes-validate (pip install -e '.[test]')")


@cache
def rendered(mode: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(MODES[mode]))


def check_references(docs: tuple[dict[str, Any], ...]) -> None:
    """Every name or selector one rendered object uses to reach another finds it in the same render."""
    deployments = of_kind(docs, "Deployment")
    services = of_kind(docs, "Service")
    for name, d in deployments.items():
        assert selects(d["spec"]["selector"]["matchLabels"], pod_labels(d)), name
    for name, svc in services.items():
        backing = [d for d in deployments.values() if selects(svc["spec"]["selector"], pod_labels(d))]
        assert backing, f"Service {name} selects no Deployment's pods"
        for port in svc["spec"]["ports"]:
            for d in backing:
                assert port["targetPort"] in container_ports(d), (name, port, d["metadata"]["name"])
    for ing in of_kind(docs, "Ingress").values():
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] in services, backend
                assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
    for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for name, pdb in of_kind(docs, "PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selects(selector, pod_labels(d)) for d in deployments.values()), name
    for name, policy in of_kind(docs, "NetworkPolicy").items():
        workloads = [*deployments.values(), *of_kind(docs, "Job").values()]
        assert any(selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(w)) for w in workloads), name


@pytest.mark.parametrize("mode", list(MODES))
class TestRendered:
    def test_every_manifest_is_valid_kubernetes(self, mode: str) -> None:
        docs = rendered(mode)
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "Service", "NetworkPolicy", "Job", "ConfigMap"} <= kinds, kinds
        for doc in docs:
            validate(doc)

    def test_the_mode_runs_its_workloads(self, mode: str) -> None:
        deployments = of_kind(rendered(mode), "Deployment").values()
        assert {pod_labels(d)["app.kubernetes.io/component"] for d in deployments} == WORKLOADS[mode]

    def test_every_reference_between_objects_resolves(self, mode: str) -> None:
        check_references(rendered(mode))

    def test_names_fit_with_the_longest_release_name(self, mode: str) -> None:
        docs = tuple(render(MODES[mode], release="r" * 60))
        services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
        assert all(len(n) <= 63 for n in services) and len(set(services)) == len(services), services
        check_references(docs)

    def test_every_workload_runs_restricted(self, mode: str) -> None:
        docs = rendered(mode)
        for w in [*of_kind(docs, "Deployment").values(), *of_kind(docs, "Job").values()]:
            pod = w["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"] == {"drop": ["ALL"]}, w["metadata"]["name"]

    def test_no_secret_value_is_rendered(self, mode: str) -> None:
        for doc in rendered(mode):
            assert doc["kind"] != "Secret", "secrets come from existingSecret or an external store, never the chart"
            text = yaml.safe_dump(doc)
            assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text), f"a credential in a URL in {doc['kind']}"


class TestValuesSchema:
    def test_a_value_of_the_wrong_type_is_refused_before_anything_renders(self) -> None:
        with pytest.raises(helm.HelmError, match="replicaCount"):
            render(_merge(BASE, {"api": {"replicaCount": "many"}}))

    def test_a_misspelt_value_is_refused_not_ignored(self) -> None:
        with pytest.raises(helm.HelmError, match="replicas"):
            render(_merge(BASE, {"api": {"replicas": 3}}))

    @pytest.mark.parametrize("mode", ["all", "Single", "", "both"])
    def test_a_mode_other_than_split_or_single_is_refused(self, mode: str) -> None:
        with pytest.raises(helm.HelmError, match="mode"):
            render(_merge(BASE, {"mode": mode}))

    def test_mode_single_takes_no_autoscaling(self) -> None:
        with pytest.raises(helm.HelmError, match="autoscaling"):
            render(_merge(BASE, {"mode": "single", "single": {"autoscaling": {"enabled": True}}}))

    def test_a_canary_weight_over_100_is_refused(self) -> None:
        with pytest.raises(helm.HelmError, match="weight"):
            render(_merge(_merge(BASE, CANARY), {"streamer": {"canary": {"weight": 150}}}))


# --- NetworkPolicies: exactly the allows each workload needs --------------------------------------

_DEP_PORTS = {"postgres": {5432}, "redis": {6379}, "rabbitmq": {5671, 5672}}  # rabbitmq: AMQP and AMQPS


def expected(role: str, env: dict[str, str] | None = None) -> dict[str, set[tuple[str, int]]]:
    """What ``role`` needs, from the code, configured by ``env`` (the chart's ConfigMap): who may reach its
    port, and what it reaches. Role ``all`` runs several roles in one process: the union of theirs."""
    if len(ROLES_OF[role]) > 1:
        parts = [expected(r, env) for r in ROLES_OF[role]]
        return {direction: set().union(*(p[direction] for p in parts)) for direction in ("ingress", "egress")}
    settings = load_settings(env or {})
    port = {"api": settings.api_port, "streamer": settings.streamer_port, "worker": settings.worker_port}[role]
    ingress = {("monitoring", port)} | ({("ingress-controller", port)} if role in ("api", "streamer") else set())
    egress = {("dns", 53)} | {(dep, p) for dep in ROLE_DEPENDENCIES[role] for p in _DEP_PORTS[dep]}
    if role == "streamer":  # the only role that calls model providers
        egress.add(("providers", 443))
    if settings.otel_exporter_otlp_endpoint:  # spans go over OTLP/HTTP to that endpoint only
        url = urlsplit(settings.otel_exporter_otlp_endpoint)
        otlp = url.port or (443 if url.scheme == "https" else 80)
        egress.add((f"any:{otlp}", otlp))
    return {"ingress": ingress, "egress": egress}


def _peer(peers: list[dict[str, Any]] | None) -> str:
    if not peers:
        return "any"
    names = set()
    for p in peers:
        ns = (p.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        if "ipBlock" in p:
            names.add("providers" if p["ipBlock"]["cidr"] == "0.0.0.0/0" else p["ipBlock"]["cidr"])
        elif ns == "ingress-nginx":
            names.add("ingress-controller")
        elif ns in ("monitoring", "kube-system"):
            names.add({"monitoring": "monitoring", "kube-system": "dns"}[ns])
        else:
            names.add(str(p))
    return ",".join(sorted(names))


def allowed(docs: tuple[dict[str, Any], ...], component: str) -> dict[str, set[tuple[str, int]]]:
    """The ingress and egress the rendered policies allow the pods of the Deployment of ``component``
    (named ports resolved)."""
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and pod_labels(d).get("app.kubernetes.io/component") == component)
    labels = pod_labels(deployment)
    named = container_ports(deployment)
    out: dict[str, set[tuple[str, int]]] = {"ingress": set(), "egress": set()}
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels):
            continue
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction) or []:
                peer = _peer(rule.get(peers_key))
                for port in rule.get("ports") or [{"port": 0}]:
                    number = named.get(port["port"], port["port"])
                    # A port with no peer restriction is named by what is conventionally on it.
                    who = peer if peer != "any" else next(
                        (dep for dep, ports in _DEP_PORTS.items() if number in ports), f"any:{number}")
                    out[direction].add((who, int(number)))
    return out


def differences(docs: tuple[dict[str, Any], ...]) -> list[str]:
    """Every missing and every extra allow, per workload (each Deployment, needing what the role it runs
    needs) and direction; empty: exactly what the code needs."""
    found = []
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == RELEASE]
    for deployment in of_kind(docs, "Deployment").values():
        component = pod_labels(deployment)["app.kubernetes.io/component"]
        want, have = expected(role_of(deployment), config["data"]), allowed(docs, component)
        for direction in ("ingress", "egress"):
            found += [f"{component} {direction}: missing {a}" for a in sorted(want[direction] - have[direction])]
            found += [f"{component} {direction}: extra {a}" for a in sorted(have[direction] - want[direction])]
    return found


class TestNetworkPolicies:
    @pytest.mark.parametrize("mode", ["defaults", "single"])
    def test_default_deny_covers_every_pod_of_the_release(self, mode: str) -> None:
        docs = rendered(mode)
        deny = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("default-deny"))
        assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
        assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "aiaas",
                                                              "app.kubernetes.io/instance": RELEASE}

    @pytest.mark.parametrize("mode", list(MODES))
    def test_each_workload_is_allowed_exactly_what_it_serves_and_reaches(self, mode: str) -> None:
        assert differences(rendered(mode)) == []

    def test_role_all_needs_the_union_of_the_three_roles(self) -> None:
        union = expected("all")
        assert ("ingress-controller", 8000) in union["ingress"] and ("ingress-controller", 8001) in union["ingress"]
        assert {("monitoring", 8000), ("monitoring", 8001), ("monitoring", 8002)} <= union["ingress"]
        assert ("providers", 443) in union["egress"] and ("postgres", 5432) in union["egress"]

    @pytest.mark.parametrize("mode", ["defaults", "single"])
    def test_a_removed_allow_is_caught(self, mode: str) -> None:
        docs = render(_merge(MODES[mode], {"networkPolicy": {"ingress": {"monitoring": {"enabled": False}}}}))
        worker = "worker" if mode == "defaults" else "all"
        assert f"{worker} ingress: missing ('monitoring', 8002)" in differences(tuple(docs))

    def test_a_removed_provider_allow_of_role_all_is_caught(self) -> None:
        docs = render(_merge(MODES["single"], {"networkPolicy": {"egress": {"providers": {"ports": [8443]}}}}))
        found = differences(tuple(docs))
        assert "all egress: missing ('providers', 443)" in found and "all egress: extra ('providers', 8443)" in found

    @pytest.mark.parametrize("mode", ["defaults", "single"])
    def test_an_extra_allow_is_caught(self, mode: str) -> None:
        extra = [{"ports": [{"port": 25, "protocol": "TCP"}]}]
        docs = render(_merge(MODES[mode], {"networkPolicy": {"extraEgress": extra}}))
        first = "api" if mode == "defaults" else "all"
        assert f"{first} egress: extra ('any:25', 25)" in differences(tuple(docs))

    @pytest.mark.parametrize(("endpoint", "port"), [("http://otel-collector.observability.svc:4318", 4318),
                                                    ("https://otlp.example.com", 443)])
    def test_spans_may_leave_for_the_otlp_endpoints_port_only(self, endpoint: str, port: int) -> None:
        docs = tuple(render(_merge(BASE, {"config": {"env": {"AIAAS_OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}}})))
        assert differences(docs) == []
        assert (f"any:{port}", port) in allowed(docs, "worker")["egress"]
        assert not {p for _, p in allowed(docs, "worker")["egress"]} & ({4317, 4318} - {port})

    def test_an_extra_ingress_to_role_all_is_caught(self) -> None:
        extra = [{"from": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"port": "worker", "protocol": "TCP"}]}]
        docs = render(_merge(MODES["single"], {"networkPolicy": {"extraIngress": extra}}))
        assert "all ingress: extra ('10.1.0.0/16', 8002)" in differences(tuple(docs))
