"""TLS for the Ingress from cert-manager (``ingress.certManager``), rendered by Helm itself.

The chart asks through cert-manager's ingress-shim: it annotates the Ingress with the issuer, and
cert-manager then creates one ``Certificate`` per ``tls`` entry, named after that entry's ``secretName``
and written to that Secret, for the entry's hosts. So the names line up when the issuer annotation is
there, every host the Ingress routes is in a ``tls`` entry, and no two Ingresses of the release claim the
same Secret (their two Certificates would overwrite each other's Secret).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from helm_support import BASE, CANARY, LINT_VALUES, helm, kubernetes_validate, of_kind, render
from helm_support import merge as _merge
from support import missing_tool

HOSTS = [{"host": "aiaas.example.com"},
         {"host": "stream.aiaas.example.com", "paths": [{"path": "/", "pathType": "Prefix", "role": "streamer"}]}]
INGRESS = _merge(BASE, {"ingress": {"enabled": True, "className": "nginx", "hosts": HOSTS}})
ISSUED = _merge(INGRESS, {"ingress": {"certManager": {"clusterIssuer": "letsencrypt"}}})


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    if helm is None or kubernetes_validate is None:
        missing_tool("helm-python-sdk and kubernetes-validate (pip install -e '.[test]')")


def _ingress(values: dict[str, Any]) -> dict[str, Any]:
    return of_kind(render(values), "Ingress")["aiaas"]


def _routed_hosts(ingress: dict[str, Any]) -> set[str]:
    return {r["host"] for r in ingress["spec"]["rules"]}


class TestIssuer:
    def test_a_cluster_issuer_gets_one_certificate_for_every_routed_host(self) -> None:
        ingress = _ingress(ISSUED)
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
        assert "cert-manager.io/issuer" not in ingress["metadata"]["annotations"]
        (tls,) = ingress["spec"]["tls"]
        # ingress-shim names the Certificate after secretName: the chart's is <fullname>-tls.
        assert tls["secretName"] == "aiaas-tls"
        assert set(tls["hosts"]) == _routed_hosts(ingress)

    def test_a_namespaced_issuer_is_named_as_such(self) -> None:
        ingress = _ingress(_merge(INGRESS, {"ingress": {"certManager": {"issuer": "acme"}}}))
        assert ingress["metadata"]["annotations"]["cert-manager.io/issuer"] == "acme"
        assert "cert-manager.io/cluster-issuer" not in ingress["metadata"]["annotations"]
        assert ingress["spec"]["tls"][0]["secretName"] == "aiaas-tls"

    def test_both_kinds_of_issuer_at_once_are_refused(self) -> None:
        with pytest.raises(helm.HelmError, match="not both"):
            render(_merge(ISSUED, {"ingress": {"certManager": {"issuer": "acme"}}}))

    def test_tls_entries_of_ones_own_keep_their_secret_names(self) -> None:
        tls = [{"secretName": "aiaas-public-tls", "hosts": ["aiaas.example.com", "stream.aiaas.example.com"]}]
        ingress = _ingress(_merge(ISSUED, {"ingress": {"tls": tls}}))
        assert ingress["spec"]["tls"] == tls
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"

    def test_without_an_issuer_no_certificate_is_asked_for(self) -> None:
        ingress = _ingress(INGRESS)
        assert "tls" not in ingress["spec"]
        assert not [a for a in (ingress["metadata"].get("annotations") or {}) if a.startswith("cert-manager.io/")]


@pytest.mark.parametrize("extra", [{}, {"mode": "single"}, CANARY,
                                   _merge(CANARY, {"streamer": {"canary": {"trafficRouting": "nginx"}}})],
                         ids=["split", "single", "canary by replicas", "canary by nginx"])
def test_in_every_mode_each_tls_secret_is_claimed_by_one_ingress_only(extra: dict[str, Any]) -> None:
    docs = render(_merge(_merge(yaml.safe_load(LINT_VALUES.read_text()), {"ingress": {"className": "nginx"}}), extra))
    claims = [(name, t["secretName"]) for name, ing in of_kind(docs, "Ingress").items()
              for t in ing["spec"].get("tls", [])]
    secrets = [secret for _, secret in claims]
    assert secrets and len(secrets) == len(set(secrets)), claims
    issued = [n for n, ing in of_kind(docs, "Ingress").items()
              if any(a.startswith("cert-manager.io/") for a in ing["metadata"].get("annotations") or {})]
    assert issued == ["aiaas"]
    main = of_kind(docs, "Ingress")["aiaas"]
    assert {h for t in main["spec"]["tls"] for h in t["hosts"]} == _routed_hosts(main)
