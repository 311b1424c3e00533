"""The Argo CD manifests (charts/argocd): Git as the source of truth, checked against the repository.

For each environment: the Applications name paths and values files that exist; the secrets' Application
syncs before the chart's (its ExternalSecret must exist before the chart's migration hook runs); the
environment's values render with Helm into valid Kubernetes; the ExternalSecret feeds exactly the Secret
the chart reads; and the Ingress gets its certificate from cert-manager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helm_support import CHART, ROOT, helm, kubernetes_validate, render, validate
from support import missing_tool

ENVIRONMENTS = ("staging", "production")


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    if helm is None or kubernetes_validate is None:
        missing_tool("helm-python-sdk and kubernetes-validate (pip install -e '.[test]')")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _apps(env: str) -> dict[str, dict[str, Any]]:
    apps = _docs(ROOT / "charts" / "argocd" / env / "applications.yaml")
    assert {a["kind"] for a in apps} == {"Application"}
    return {a["metadata"]["name"]: a for a in apps}


@pytest.mark.parametrize("env", ENVIRONMENTS)
class TestEnvironment:
    def test_the_applications_name_what_the_repository_has(self, env: str) -> None:
        apps = _apps(env)
        assert set(apps) == {f"aiaas-{env}-secrets", f"aiaas-{env}"}
        for app in apps.values():
            source = app["spec"]["source"]
            assert (ROOT / source["path"]).is_dir(), source["path"]
            for values_file in source.get("helm", {}).get("valueFiles", []):
                assert (ROOT / source["path"] / values_file).is_file(), values_file
            include = source.get("directory", {}).get("include")
            if include:
                assert (ROOT / source["path"] / include).is_file(), include
            assert app["spec"]["destination"]["namespace"] == f"aiaas-{env}"
            assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}

    def test_the_secret_syncs_before_the_chart_that_reads_it(self, env: str) -> None:
        apps = _apps(env)
        wave = {n: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for n, a in apps.items()}
        assert wave[f"aiaas-{env}-secrets"] < wave[f"aiaas-{env}"]

    def test_the_environment_renders_into_valid_kubernetes_fed_by_the_external_secret(self, env: str) -> None:
        app = _apps(env)[f"aiaas-{env}"]
        (values_file,) = app["spec"]["source"]["helm"]["valueFiles"]
        values = yaml.safe_load((CHART / values_file).read_text())
        docs = render(values, namespace=f"aiaas-{env}", release=app["spec"]["source"]["helm"]["releaseName"])
        for doc in docs:
            validate(doc)
        (external,) = _docs(ROOT / "charts" / "argocd" / env / "externalsecret.yaml")
        assert external["kind"] == "ExternalSecret" and external["apiVersion"].startswith("external-secrets.io/")
        assert external["metadata"]["namespace"] == f"aiaas-{env}"
        secret = external["spec"]["target"]["name"]
        assert values["secret"]["existingSecret"] == secret
        # Every role's pods read their secret settings from that Secret.
        for deployment in (d for d in docs if d["kind"] == "Deployment"):
            refs = [e["secretRef"]["name"] for c in deployment["spec"]["template"]["spec"]["containers"]
                    for e in c.get("envFrom", []) if "secretRef" in e]
            assert refs == [secret], deployment["metadata"]["name"]
        # TLS through cert-manager on the Ingress, and the traffic starts from default-deny.
        (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
        assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
        # cert-manager names each Certificate after its tls entry's secretName: every routed host is in one.
        assert {h for t in ingress["spec"]["tls"] for h in t["hosts"]} == {r["host"] for r in ingress["spec"]["rules"]}
        assert any(d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("default-deny") for d in docs)
