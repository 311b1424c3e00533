"""The Terraform module, checked by tools: parsed by python-hcl2 (no terraform or tofu binary is on this
machine's registries) and held to conventions and to the chart it installs.

- every file parses;
- Terraform and every provider are pinned to a range with an upper bound;
- every variable has a type and a description; every variable that carries a secret is ``sensitive``
  and has no default;
- every output has a description and none hands out a secret;
- every key the module passes to the chart (``local.chart_values``) is a value the chart has, so the
  chart's ``values.schema.json`` (closed objects) cannot refuse it at apply time;
- the example tfvars names only declared variables and holds placeholders only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import missing_tool

try:
    import hcl2
except ImportError:  # pragma: no cover - the test extra installs it
    hcl2 = None

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "terraform"
SECRETISH = re.compile(r"(url|password|token|secret_env|api_key)$")


def _unquote(node: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and labels: drop them, keys and values alike."""
    if isinstance(node, dict):  # (and without the parser's own bookkeeping: comments, block markers)
        return {_unquote(k): _unquote(v) for k, v in node.items() if k not in ("__comments__", "__is_block__")}
    if isinstance(node, list):
        return [_unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    if hcl2 is None:
        missing_tool("python-hcl2 (pip install -e '.[test]')")
    out = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as f:
            out[path.name] = _unquote(hcl2.load(f))
    assert out, "no .tf file"
    return out


def _blocks(parsed: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for doc in parsed.values() for block in doc.get(kind, []) for name, body in block.items()}


class TestPins:
    def test_terraform_and_every_provider_are_pinned_with_an_upper_bound(self, parsed: dict[str, Any]) -> None:
        (settings,) = [t for doc in parsed.values() for t in doc.get("terraform", [])]
        assert settings["required_version"].startswith(">=")
        providers = {k: v for block in settings["required_providers"] for k, v in block.items()}
        assert {"helm", "kubernetes"} <= providers.keys()
        for name, spec in providers.items():
            assert spec["source"].startswith("hashicorp/"), name
            assert "<" in spec["version"], f"provider {name} has no upper bound: {spec['version']}"


class TestVariables:
    def test_every_variable_has_a_type_and_a_description(self, parsed: dict[str, Any]) -> None:
        variables = _blocks(parsed, "variable")
        assert len(variables) > 20
        for name, body in variables.items():
            assert body.get("type") and body.get("description"), name

    def test_secrets_are_sensitive_and_have_no_default(self, parsed: dict[str, Any]) -> None:
        secret = {n: b for n, b in _blocks(parsed, "variable").items() if SECRETISH.search(n)}
        assert {"database_url", "redis_url", "amqp_url", "bootstrap_admin_password"} <= secret.keys()
        for name, body in secret.items():
            assert body.get("sensitive") is True, f"variable {name} carries a secret but is not sensitive"
            assert body.get("default") in (None, {}), f"variable {name} has a default secret"

    def test_no_output_hands_out_a_secret(self, parsed: dict[str, Any]) -> None:
        secret = {n for n in _blocks(parsed, "variable") if SECRETISH.search(n)}
        for name, body in _blocks(parsed, "output").items():
            assert body.get("description"), name
            value = str(body["value"])
            assert not any(f"var.{s}" in value for s in secret), f"output {name} exposes a secret variable"
            assert "secret_env" not in value, f"output {name} exposes the secret environment"


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of a parsed HCL object, down to the first interpolated (computed) value."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in [(*prefix, k), *_paths(v, (*prefix, k))]]
    return []


class TestChartValues:
    def test_every_key_passed_to_the_chart_is_one_the_chart_has(self, parsed: dict[str, Any]) -> None:
        chart = yaml.safe_load((ROOT / "charts" / "aiaas" / "values.yaml").read_text())
        (values,) = [loc["chart_values"] for doc in parsed.values() for loc in doc.get("locals", [])
                     if "chart_values" in loc]
        paths = _paths(values)
        assert len(paths) > 15
        for path in paths:
            node: Any = chart
            for i, key in enumerate(path):
                # Free-form maps of the chart (labels, selectors, annotations) take any key below them.
                if isinstance(node, dict) and not node and i > 0:
                    break
                assert isinstance(node, dict) and key in node, f"the chart has no value {'.'.join(path)}"
                node = node[key]

    def test_the_example_names_only_declared_variables_with_placeholders(self, parsed: dict[str, Any]) -> None:
        declared = set(_blocks(parsed, "variable"))
        text = (MODULE / "terraform.tfvars.example").read_text()
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+)\s*=\s*(.*)$", line)
            if not m:
                continue
            assert m[1] in declared, f"terraform.tfvars.example sets undeclared {m[1]}"
            if SECRETISH.search(m[1]):
                assert "changeme" in m[2], f"{m[1]} in the example is not a placeholder"
        ignored = (MODULE / ".gitignore").read_text().splitlines()
        assert "*.tfvars" in ignored and "*.tfstate" in ignored and "!terraform.tfvars.example" in ignored
