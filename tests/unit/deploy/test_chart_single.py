"""Mode single of the chart: one Deployment of ``aiaas serve --role all``, rendered by Helm itself.

What role ``all`` is comes from the code: the roles it runs (``ROLES_OF`` in ``entrypoints/serve.py``),
the ports they listen on (``Settings``) and which paths its api port hands to the streamer's app
(``OneOrigin``, through ``entrypoints/streamer.serves``). Validity against the Kubernetes schemas and the
exact network allows of this mode are in ``test_chart.py``, with the other modes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml

from aiaas.entrypoints.serve import ROLES_OF
from aiaas.entrypoints.streamer import serves
from aiaas.kernel.config import load_settings
from helm_support import BASE, LINT_VALUES, container_ports, helm, kubernetes_validate, of_kind, pod_labels, render
from helm_support import merge as _merge
from support import missing_tool

SINGLE = _merge(BASE, {"mode": "single"})
HOSTS = [{"host": "aiaas.example.com"},
         {"host": "stream.aiaas.example.com", "paths": [{"path": "/", "pathType": "Prefix", "role": "streamer"}]}]


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    if helm is None or kubernetes_validate is None:
        missing_tool("helm-python-sdk and kubernetes-validate (pip install -e '.[test]')")


@cache
def _render(extra: str = "{}") -> tuple[dict[str, Any], ...]:
    return tuple(render(_merge(SINGLE, yaml.safe_load(extra))))


def _one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    (only,) = of_kind(docs, kind).values()
    return only


def _container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


class TestTheDeployment:
    def test_one_deployment_runs_every_role_in_one_process(self) -> None:
        docs = _render()
        deployment = _one(docs, "Deployment")
        assert set(ROLES_OF["all"]) == {"api", "streamer", "worker"}
        assert deployment["metadata"]["name"] == "aiaas-all"
        assert _container(docs)["args"] == ["serve", "--role", "all", "--workers", "1"]
        assert deployment["spec"]["replicas"] == 1

    def test_it_listens_on_the_port_of_each_role_it_runs(self) -> None:
        settings = load_settings({})
        ports = container_ports(_one(_render(), "Deployment"))
        assert ports == {"http": settings.api_port, "inference": settings.streamer_port, "worker": settings.worker_port}

    def test_probes_live_on_the_api_port_and_readiness_waits_for_the_streamer(self) -> None:
        container = _container(_render())
        assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        # The streamer's /ready also waits for the embedded model: no request reaches a loading model.
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "inference"}

    def test_its_security_context_is_the_split_modes(self) -> None:
        split = of_kind(render(BASE), "Deployment")["aiaas-api"]["spec"]["template"]["spec"]
        single = _one(_render(), "Deployment")["spec"]["template"]["spec"]
        assert single["securityContext"] == split["securityContext"]
        assert single["containers"][0]["securityContext"] == split["containers"][0]["securityContext"]
        assert single["volumes"] == split["volumes"]
        assert single["containers"][0]["volumeMounts"] == split["containers"][0]["volumeMounts"]
        assert single["automountServiceAccountToken"] is False and single["enableServiceLinks"] is False

    def test_the_grace_period_covers_the_drain_and_is_checked(self) -> None:
        assert _one(_render(), "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 35
        with pytest.raises(helm.HelmError, match=r"single\.terminationGracePeriodSeconds"):
            render(_merge(SINGLE, {"single": {"terminationGracePeriodSeconds": 10}}))

    def test_several_processes_share_the_metrics_directory(self) -> None:
        docs = _render('{single: {workers: 3}}')
        assert _container(docs)["args"][-2:] == ["--workers", "3"]
        (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "aiaas"]
        assert config["data"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prom"  # noqa: S108 - an emptyDir in the pod

    def test_the_migration_job_still_runs_first(self) -> None:
        job = _one(_render(), "Job")
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


class TestWhatDoesNotApply:
    def test_no_autoscaler_no_budget_and_no_split_workload(self) -> None:
        docs = tuple(render(_merge(yaml.safe_load(LINT_VALUES.read_text()), {"mode": "single"})))
        assert not of_kind(docs, "HorizontalPodAutoscaler") and not of_kind(docs, "PodDisruptionBudget")
        names = {d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "Service")}
        assert names == {"aiaas-all"}

    def test_a_budget_only_with_more_than_one_replica(self) -> None:
        docs = _render('{single: {replicaCount: 2}}')
        pdb = _one(docs, "PodDisruptionBudget")
        assert pdb["spec"] == {"maxUnavailable": 1,
                               "selector": _one(docs, "Deployment")["spec"]["selector"]}


class TestTheServiceAndTheIngress:
    def test_the_service_exposes_the_api_and_the_inference_port(self) -> None:
        docs = _render()
        service = _one(docs, "Service")
        assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
            ("http", 8000, "http"), ("inference", 8001, "inference")}
        assert service["spec"]["selector"] == _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]

    def test_the_ingress_routes_management_and_inference_paths_to_the_one_service(self) -> None:
        docs = _render(yaml.safe_dump({"ingress": {"enabled": True, "className": "nginx", "hosts": HOSTS}}))
        rules = {r["host"]: r["http"]["paths"] for r in _one(docs, "Ingress")["spec"]["rules"]}
        # One host for everything: port http is the api's, which hands the inference paths to the streamer.
        (everything,) = rules["aiaas.example.com"]
        assert everything["backend"]["service"] == {"name": "aiaas-all", "port": {"name": "http"}}
        assert (everything["path"], everything["pathType"]) == ("/", "Prefix")
        # A host of role streamer gets the streamer's own port.
        (inference,) = rules["stream.aiaas.example.com"]
        assert inference["backend"]["service"] == {"name": "aiaas-all", "port": {"name": "inference"}}

    @pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/embeddings",
                                      "/v1/models"])
    def test_the_api_port_serves_the_inference_paths_too(self, path: str) -> None:
        # Why one host routed to port http is enough: role all's api port hands these to the streamer's app.
        assert serves(path)

    @pytest.mark.parametrize("path", ["/v1/orgs", "/v1/auth/login", "/console/", "/v1/organization/usage/completions"])
    def test_management_paths_stay_with_the_api(self, path: str) -> None:
        assert not serves(path)

    def test_the_service_monitor_scrapes_the_one_port_once(self) -> None:
        docs = _render('{serviceMonitor: {enabled: true}}')
        monitor = _one(docs, "ServiceMonitor")
        (values,) = [e["values"] for e in monitor["spec"]["selector"]["matchExpressions"]
                     if e["key"] == "app.kubernetes.io/component"]
        assert pod_labels(_one(docs, "Deployment"))["app.kubernetes.io/component"] in values
        # One process, one registry: scraping a second port would count every series twice.
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
