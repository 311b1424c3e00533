"""The streamer's canary (``streamer.canary``): a second Deployment beside the stable one, rendered by Helm.

What must hold for an operator to trust it: turning it on (or off, or switching how traffic is shared)
leaves the stable Deployment exactly as it was (its selector is immutable, and any other change would
restart it); the two tracks' selectors never claim each other's pods; every Service and Ingress backend
it names exists in the same render and selects the pods it should; the migration Job runs the newest
code; and the canary Ingress of ingress-nginx repeats exactly the main Ingress's streamer paths.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml

from helm_support import (
    BASE,
    CANARY,
    LINT_VALUES,
    container_ports,
    helm,
    kubernetes_validate,
    of_kind,
    pod_labels,
    render,
    selects,
    validate,
)
from helm_support import merge as _merge
from support import missing_tool

ON = _merge(yaml.safe_load(LINT_VALUES.read_text()), {"ingress": {"className": "nginx"}})
NGINX = {"streamer": {"canary": {"trafficRouting": "nginx", "weight": 25, "header": "X-Aiaas-Canary"}}}
VARIANTS = {
    "off": ON,
    "replicas": _merge(ON, CANARY),
    "nginx": _merge(_merge(ON, CANARY), NGINX),
}


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    if helm is None or kubernetes_validate is None:
        missing_tool("helm-python-sdk and kubernetes-validate (pip install -e '.[test]')")


@cache
def rendered(variant: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(VARIANTS[variant]))


def _image(workload: dict[str, Any]) -> str:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


class TestOffByDefault:
    def test_nothing_of_a_canary_renders_unless_asked(self) -> None:
        for docs in (render(BASE), rendered("off")):
            assert not [d for d in docs if "canary" in d["metadata"]["name"] or "pool" in d["metadata"]["name"]]

    def test_mode_single_has_no_canary_to_run(self) -> None:
        docs = render(_merge(_merge(BASE, CANARY), {"mode": "single"}))
        assert not [d for d in docs if "canary" in d["metadata"]["name"]]


@pytest.mark.parametrize("variant", ["replicas", "nginx"])
class TestTheStableTrackIsUntouched:
    def test_the_stable_deployment_is_identical_with_the_canary_on(self, variant: str) -> None:
        before = of_kind(rendered("off"), "Deployment")["aiaas-streamer"]
        after = of_kind(rendered(variant), "Deployment")["aiaas-streamer"]
        assert after["spec"]["selector"] == before["spec"]["selector"]  # immutable: a change fails the upgrade
        assert after == before  # and nothing else changes either: no restart of the stable pods

    def test_the_stable_service_and_autoscaler_are_identical(self, variant: str) -> None:
        for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            before, after = of_kind(rendered("off"), kind), of_kind(rendered(variant), kind)
            assert after["aiaas-streamer"] == before["aiaas-streamer"], kind

    def test_the_tracks_selectors_never_claim_each_others_pods(self, variant: str) -> None:
        deployments = of_kind(rendered(variant), "Deployment")
        stable, canary = deployments["aiaas-streamer"], deployments["aiaas-streamer-canary"]
        assert selects(canary["spec"]["selector"]["matchLabels"], pod_labels(canary))
        assert not selects(stable["spec"]["selector"]["matchLabels"], pod_labels(canary))
        assert not selects(canary["spec"]["selector"]["matchLabels"], pod_labels(stable))

    def test_every_manifest_is_valid_kubernetes(self, variant: str) -> None:
        for doc in rendered(variant):
            validate(doc)


@pytest.mark.parametrize("variant", ["replicas", "nginx"])
class TestTheCanaryTrack:
    def test_it_runs_the_image_under_test_as_a_streamer(self, variant: str) -> None:
        deployments = of_kind(rendered(variant), "Deployment")
        canary, stable = deployments["aiaas-streamer-canary"], deployments["aiaas-streamer"]
        assert _image(canary) == "aiaas:0.2.0" and _image(stable) == "aiaas:0.1.0"
        (container,) = canary["spec"]["template"]["spec"]["containers"]
        assert container["args"][:3] == ["serve", "--role", "streamer"]
        assert canary["spec"]["replicas"] == 1
        # The streamer's settings otherwise: probes, resources, security, grace period.
        (stable_container,) = stable["spec"]["template"]["spec"]["containers"]
        for key in ("readinessProbe", "livenessProbe", "resources", "securityContext", "ports", "envFrom"):
            assert container[key] == stable_container[key], key
        assert (canary["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                == stable["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])

    def test_the_migrations_run_the_canarys_code_first(self, variant: str) -> None:
        (job,) = of_kind(rendered(variant), "Job").values()
        assert _image(job) == "aiaas:0.2.0"

    def test_its_own_service_selects_only_its_pods(self, variant: str) -> None:
        docs = rendered(variant)
        service = of_kind(docs, "Service")["aiaas-streamer-canary"]
        deployments = of_kind(docs, "Deployment")
        matched = [n for n, d in deployments.items() if selects(service["spec"]["selector"], pod_labels(d))]
        assert matched == ["aiaas-streamer-canary"]
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(container_ports(deployments[matched[0]]))

    def test_prometheus_scrapes_the_canary_on_its_own(self, variant: str) -> None:
        (monitor,) = of_kind(rendered(variant), "ServiceMonitor").values()
        (components,) = [e["values"] for e in monitor["spec"]["selector"]["matchExpressions"]]
        assert "streamer-canary" in components
        assert "streamer-pool" not in components  # the pool would scrape every streamer pod a second time

    def test_it_has_the_streamers_network_allows_and_no_more(self, variant: str) -> None:
        policies = of_kind(rendered(variant), "NetworkPolicy")
        assert {n for n in policies if "canary" in n} == {"aiaas-streamer-canary-ingress",
                                                          "aiaas-streamer-canary-egress"}
        for suffix in ("ingress", "egress"):
            canary = policies[f"aiaas-streamer-canary-{suffix}"]["spec"]
            stable = policies[f"aiaas-streamer-{suffix}"]["spec"]
            assert {k: v for k, v in canary.items() if k != "podSelector"} == {
                k: v for k, v in stable.items() if k != "podSelector"}

    def test_it_has_no_autoscaler_and_no_budget(self, variant: str) -> None:
        docs = rendered(variant)
        assert "aiaas-streamer-canary" not in of_kind(docs, "HorizontalPodAutoscaler")
        assert "aiaas-streamer-canary" not in of_kind(docs, "PodDisruptionBudget")


def _backends(ingress: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(r["host"], p["path"]): p["backend"]["service"]["name"]
            for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}


class TestSharingByReplicas:
    def test_the_ingress_sends_the_streamers_paths_to_the_pool_of_both_tracks(self) -> None:
        docs = rendered("replicas")
        (ingress,) = of_kind(docs, "Ingress").values()
        assert _backends(ingress) == {("aiaas.example.com", "/"): "aiaas-api",
                                      ("stream.aiaas.example.com", "/"): "aiaas-streamer-pool"}
        pool = of_kind(docs, "Service")["aiaas-streamer-pool"]
        matched = {n for n, d in of_kind(docs, "Deployment").items()
                   if selects(pool["spec"]["selector"], pod_labels(d))}
        assert matched == {"aiaas-streamer", "aiaas-streamer-canary"}

    def test_turning_it_off_routes_back_to_the_stable_service(self) -> None:
        (ingress,) = of_kind(rendered("off"), "Ingress").values()
        assert _backends(ingress)[("stream.aiaas.example.com", "/")] == "aiaas-streamer"


class TestSharingByNginx:
    def test_the_canary_ingress_repeats_the_streamers_paths_with_a_weight(self) -> None:
        ingresses = of_kind(rendered("nginx"), "Ingress")
        main, canary = ingresses["aiaas"], ingresses["aiaas-streamer-canary"]
        streamer_paths = {k for k, v in _backends(main).items() if v == "aiaas-streamer"}
        assert streamer_paths and set(_backends(canary)) == streamer_paths
        assert set(_backends(canary).values()) == {"aiaas-streamer-canary"}
        assert canary["spec"]["ingressClassName"] == main["spec"]["ingressClassName"] == "nginx"
        assert canary["metadata"]["annotations"] == {
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "25",
            "nginx.ingress.kubernetes.io/canary-by-header": "X-Aiaas-Canary",
        }

    def test_the_canary_ingress_asks_for_no_certificate_of_its_own(self) -> None:
        canary = of_kind(rendered("nginx"), "Ingress")["aiaas-streamer-canary"]
        assert "tls" not in canary["spec"]
        assert not [a for a in canary["metadata"]["annotations"] if a.startswith("cert-manager.io/")]

    def test_without_an_ingress_it_refuses_to_render(self) -> None:
        with pytest.raises(helm.HelmError, match=r"ingress\.enabled"):
            render(_merge(_merge(BASE, CANARY), NGINX))

    def test_without_a_streamer_path_it_refuses_to_render(self) -> None:
        api_only = {"ingress": {"hosts": [{"host": "aiaas.example.com"}]}}
        values = _merge(_merge(_merge(BASE, CANARY), NGINX), {"ingress": {"enabled": True}})
        with pytest.raises(helm.HelmError, match="role streamer"):
            render(_merge(values, api_only))


class TestRefusals:
    def test_a_canary_without_an_image_of_its_own_is_refused(self) -> None:
        with pytest.raises(helm.HelmError, match=r"canary\.image"):
            render(_merge(BASE, {"streamer": {"canary": {"enabled": True}}}))

    def test_an_unknown_traffic_routing_is_refused(self) -> None:
        with pytest.raises(helm.HelmError, match="trafficRouting"):
            render(_merge(_merge(BASE, CANARY), {"streamer": {"canary": {"trafficRouting": "istio"}}}))

    def test_a_pinned_migration_image_wins(self) -> None:
        docs = render(_merge(_merge(BASE, CANARY), {"migrations": {"image": {"tag": "0.3.0"}}}))
        (job,) = of_kind(docs, "Job").values()
        assert _image(job) == "aiaas:0.3.0"

    def test_a_canary_pinned_by_digest_runs_that_digest(self) -> None:
        digest = "sha256:" + "a" * 64
        docs = render(_merge(BASE, {"streamer": {"canary": {"enabled": True, "image": {"digest": digest}}}}))
        assert _image(of_kind(docs, "Deployment")["aiaas-streamer-canary"]) == f"aiaas@{digest}"
