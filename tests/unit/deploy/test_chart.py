"""The Helm chart, rendered by Helm itself and checked by tools: valid Kubernetes, its values schema
enforced, and NetworkPolicies that allow exactly what each role serves and reaches.

Helm runs in-process through ``helm-python-sdk`` (Helm's own Go SDK as a library: the real template
engine, sprig functions and ``values.schema.json`` validation), offline. Every rendered manifest is then
validated against the Kubernetes API's JSON schemas (``kubernetes-validate``), strictly (an unknown
field fails). The expected network allows are computed from the code, not from the chart: the ports
the roles listen on (``Settings``) and the services each role depends on (the readiness checks of
``entrypoints/bootstrap.py``).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
import yaml

from aiaas.entrypoints.bootstrap import ROLE_DEPENDENCIES
from aiaas.kernel.config import load_settings
from helm_support import BASE, CHART, RELEASE, helm, kubernetes_validate, render, validate
from helm_support import merge as _merge
from support import missing_tool

MODES = {
    "defaults": BASE,
    "everything on": yaml.safe_load((CHART / "ci" / "lint-values.yaml").read_text()),
}


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    if helm is None or kubernetes_validate is None:
        missing_tool("helm-python-sdk and kubernetes-validate (pip install -e '.[test]')")


@cache
def rendered(mode: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(MODES[mode]))


@pytest.mark.parametrize("mode", list(MODES))
class TestRendered:
    def test_every_manifest_is_valid_kubernetes(self, mode: str) -> None:
        docs = rendered(mode)
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "Service", "NetworkPolicy", "Job", "ConfigMap"} <= kinds, kinds
        for doc in docs:
            validate(doc)

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


# --- NetworkPolicies: exactly the allows each role needs -------------------------------------------

ROLES = ("api", "streamer", "worker")
_DEP_PORTS = {"postgres": {5432}, "redis": {6379}, "rabbitmq": {5671, 5672}}  # rabbitmq: AMQP and AMQPS


def expected(role: str) -> dict[str, set[tuple[str, int]]]:
    """What ``role`` needs, from the code: who may reach its port, and what it reaches."""
    settings = load_settings({})
    port = {"api": settings.api_port, "streamer": settings.streamer_port, "worker": settings.worker_port}[role]
    ingress = {("monitoring", port)} | ({("ingress-controller", port)} if role in ("api", "streamer") else set())
    egress = {("dns", 53)} | {(dep, p) for dep in ROLE_DEPENDENCIES[role] for p in _DEP_PORTS[dep]}
    if role == "streamer":  # the only role that calls model providers
        egress.add(("providers", 443))
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


def allowed(docs: tuple[dict[str, Any], ...], role: str) -> dict[str, set[tuple[str, int]]]:
    """The ingress and egress the rendered policies allow the pods of ``role`` (named ports resolved)."""
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == role)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    named = {p["name"]: p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports", [])}
    out: dict[str, set[tuple[str, int]]] = {"ingress": set(), "egress": set()}
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not selector.items() <= labels.items():
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
    """Every missing and every extra allow, per role and direction (empty: exactly what the code needs)."""
    found = []
    for role in ROLES:
        want, have = expected(role), allowed(docs, role)
        for direction in ("ingress", "egress"):
            found += [f"{role} {direction}: missing {a}" for a in sorted(want[direction] - have[direction])]
            found += [f"{role} {direction}: extra {a}" for a in sorted(have[direction] - want[direction])]
    return found


class TestNetworkPolicies:
    def test_default_deny_covers_every_pod_of_the_release(self) -> None:
        docs = rendered("defaults")
        deny = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("default-deny"))
        assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
        assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "aiaas",
                                                              "app.kubernetes.io/instance": RELEASE}

    def test_each_role_is_allowed_exactly_what_it_serves_and_reaches(self) -> None:
        assert differences(rendered("defaults")) == []

    def test_a_removed_allow_is_caught(self) -> None:
        docs = render(_merge(BASE, {"networkPolicy": {"ingress": {"monitoring": {"enabled": False}}}}))
        assert "worker ingress: missing ('monitoring', 8002)" in differences(tuple(docs))

    def test_an_extra_allow_is_caught(self) -> None:
        docs = render(_merge(BASE, {"networkPolicy": {"extraEgress": [{"ports": [{"port": 25, "protocol": "TCP"}]}]}}))
        assert "api egress: extra ('any:25', 25)" in differences(tuple(docs))
