"""The Grafana dashboards the chart provisions (charts/aiaas/dashboards): valid dashboards, PromQL that parses,
and only metrics, labels and metric types that the running roles really export on /metrics.

Grafana itself is not run here (no image on the test machines); instead every expression goes through a
small PromQL parser of this module, and every series it names is looked up in what the api, streamer and
worker apps serve after one streamed completion and one failed one went through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiaas.auth import api as auth_api
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.schemas import DeploymentSpec, ModelSpec
from aiaas.inference.service import catalog as catalog_service
from aiaas.kernel.config import Settings
from aiaas.kernel.errors import NotFound
from aiaas.kernel.security import OrgRole, Principal, Scope
from aiaas.orgs import api as orgs_api
from fake_upstream import FakeUpstream
from support import FIXTURE_BCRYPT_ROUNDS, free_port

DASHBOARDS = sorted((Path(__file__).parents[2] / "charts" / "aiaas" / "dashboards").glob("*.json"))

# Labels Prometheus adds when it scrapes a target through the chart's ServiceMonitor.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "container", "endpoint"})
# Grafana's own variables, interpolated before the query reaches Prometheus.
GRAFANA_VARIABLES = frozenset({"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s"})

# --- a small PromQL parser ----------------------------------------------------------------------------------

RANGE_FUNCTIONS = frozenset({
    "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "predict_linear", "holt_winters",
    "double_exponential_smoothing", "absent_over_time", "present_over_time", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "mad_over_time"
})
FUNCTIONS = RANGE_FUNCTIONS | frozenset({
    "abs", "absent", "ceil", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week", "day_of_year",
    "days_in_month", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "hour", "label_join", "label_replace", "ln", "log2",
    "log10", "minute", "month", "round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label",
    "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year", "acos", "acosh", "asin", "asinh", "atan",
    "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi"
})
ARITY = {"histogram_quantile": (2, 2), "label_replace": (5, 5), "vector": (1, 1), "time": (0, 0), "pi": (0, 0),
         "clamp": (3, 3), "round": (1, 2), "predict_linear": (2, 2), "quantile_over_time": (2, 2)}
AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "limitk", "limit_ratio"
})
PARAMETRIC = frozenset({"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
              "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"})

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<dur>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
  | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<var>\$\{\w+\}|\$\w+)
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=(){}\[\],:@]))""", re.X)


class Selector(NamedTuple):
    name: str
    matchers: tuple[tuple[str, str, str], ...]
    ranged: bool = False  # x[5m]


class Call(NamedTuple):
    func: str
    args: tuple[Any, ...]


class Agg(NamedTuple):
    op: str
    args: tuple[Any, ...]
    by: tuple[str, ...] | None  # None: no grouping clause
    without: bool


class Binary(NamedTuple):
    op: str
    lhs: Any
    rhs: Any
    on: tuple[str, ...] | None  # on(...) labels; None with ignoring or no matching clause
    group: str | None  # "left", "right"
    group_labels: tuple[str, ...]


class Subquery(NamedTuple):
    expr: Any


class Literal(NamedTuple):
    kind: str  # "scalar" or "string"
    value: str


class PromQLError(ValueError):
    """An expression that Prometheus would refuse."""


def tokenize(expr: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; a character no token starts with is an error."""
    out, pos, end = [], 0, len(expr.rstrip())
    while pos < end:
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise PromQLError(f"unexpected character at {pos}: {expr[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class Parser:
    """Recursive descent over the grammar of Prometheus' query language (without native histogram syntax)."""

    def __init__(self, expr: str) -> None:
        self.toks = tokenize(expr)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "")

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        k, t = self.peek()
        if (text is not None and t != text) or (kind is not None and k != kind) or k == "eof":
            raise PromQLError(f"expected {text or kind} at token {self.i}, got {t or 'the end'!r}")
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text and self.peek()[0] in ("op", "ident"):
            self.i += 1
            return True
        return False

    def parse(self) -> Any:
        node = self.expr(1)
        if self.peek()[0] != "eof":
            raise PromQLError(f"unexpected {self.peek()[1]!r} after a complete expression")
        return node

    def expr(self, min_prec: int) -> Any:
        lhs = self.unary()
        while True:
            kind, op = self.peek()
            prec = PRECEDENCE.get(op) if kind in ("op", "ident") else None
            if prec is None or prec < min_prec:
                return lhs
            self.i += 1
            if op in COMPARISONS:
                self.accept("bool")
            on: tuple[str, ...] | None = None
            group, group_labels = None, ()
            if self.peek()[1] in ("on", "ignoring"):
                is_on = self.take() == "on"
                labels = self.label_list()
                on = labels if is_on else None
                if self.peek()[1] in ("group_left", "group_right"):
                    group = self.take().removeprefix("group_")
                    group_labels = self.label_list() if self.peek()[1] == "(" else ()
            rhs = self.expr(prec if op == "^" else prec + 1)
            lhs = Binary(op, lhs, rhs, on, group, group_labels)

    def unary(self) -> Any:
        if self.peek() in (("op", "-"), ("op", "+")):
            self.i += 1
            return Binary("*", Literal("scalar", "-1"), self.unary(), None, None, ())
        node = self.primary()
        while True:
            if self.accept("["):
                self.duration()
                if self.accept(":"):
                    if self.peek()[1] != "]":
                        self.duration()
                    node = Subquery(node)
                elif isinstance(node, Selector) and not node.ranged:
                    node = node._replace(ranged=True)
                else:
                    raise PromQLError("a range applies to a plain vector selector only")
                self.take("]")
            elif self.accept("offset"):
                self.accept("-")
                self.duration()
            elif self.accept("@"):
                if self.peek()[1] in ("start", "end"):
                    self.take()
                    self.take("(")
                    self.take(")")
                else:
                    self.take(kind="num")
            else:
                return node

    def duration(self) -> None:
        if self.peek()[0] not in ("dur", "var"):
            raise PromQLError(f"expected a duration, got {self.peek()[1]!r}")
        self.i += 1

    def label_list(self) -> tuple[str, ...]:
        self.take("(")
        labels: list[str] = []
        while not self.accept(")"):
            labels.append(self.take(kind="ident"))
            if self.peek()[1] != ")":
                self.take(",")
        return tuple(labels)

    def args(self) -> tuple[Any, ...]:
        self.take("(")
        out: list[Any] = []
        while not self.accept(")"):
            out.append(self.expr(1))
            if self.peek()[1] != ")":
                self.take(",")
        return tuple(out)

    def primary(self) -> Any:
        kind, text = self.peek()
        if kind in ("num", "str"):
            self.i += 1
            return Literal("scalar" if kind == "num" else "string", text)
        if text == "(" and kind == "op":
            self.i += 1
            node = self.expr(1)
            self.take(")")
            return node
        if text == "{" and kind == "op":
            raise PromQLError("a selector without a metric name")
        if kind != "ident":
            raise PromQLError(f"unexpected {text or 'end'!r}")
        self.i += 1
        if text in AGGREGATIONS and self.peek()[1] in ("(", "by", "without"):
            return self.aggregation(text)
        if self.peek()[1] == "(":
            if text not in FUNCTIONS:
                raise PromQLError(f"unknown function {text}()")
            args = self.args()
            low, high = ARITY.get(text, (1, 3))
            if not low <= len(args) <= high:
                raise PromQLError(f"{text}() takes {low}-{high} arguments, got {len(args)}")
            return Call(text, args)
        if text in KEYWORDS or text in PRECEDENCE:
            raise PromQLError(f"unexpected keyword {text!r}")
        return Selector(text, self.matchers() if self.peek()[1] == "{" else ())

    def aggregation(self, op: str) -> Agg:
        by, without = None, False
        if self.peek()[1] in ("by", "without"):
            without = self.take() == "without"
            by = self.label_list()
        args = self.args()
        if by is None and self.peek()[1] in ("by", "without"):
            without = self.take() == "without"
            by = self.label_list()
        if len(args) != (2 if op in PARAMETRIC else 1):
            raise PromQLError(f"{op}() got {len(args)} arguments")
        return Agg(op, args, by, without)

    def matchers(self) -> tuple[tuple[str, str, str], ...]:
        self.take("{")
        out = []
        while not self.accept("}"):
            label = self.take(kind="ident")
            op = self.take(kind="op")
            if op not in ("=", "!=", "=~", "!~"):
                raise PromQLError(f"bad label matcher operator {op!r}")
            out.append((label, op, self.take(kind="str")))
            if self.peek()[1] != "}":
                self.take(",")
        return tuple(out)


def value_kind(node: Any) -> str:
    """scalar, string, vector or matrix; raises where Prometheus would refuse the argument types."""
    if isinstance(node, Literal):
        return node.kind
    if isinstance(node, Selector):
        return "matrix" if node.ranged else "vector"
    if isinstance(node, Subquery):
        if value_kind(node.expr) != "vector":
            raise PromQLError("a subquery needs an instant vector")
        return "matrix"
    if isinstance(node, Call):
        kinds = [value_kind(a) for a in node.args]
        if node.func in RANGE_FUNCTIONS:
            if kinds.count("matrix") != 1:
                raise PromQLError(f"{node.func}() needs one range vector, like x[5m]")
        elif "matrix" in kinds:
            raise PromQLError(f"{node.func}() does not take a range vector")
        return "scalar" if node.func in ("scalar", "time", "pi") else "vector"
    if isinstance(node, Agg):
        if value_kind(node.args[-1]) != "vector":
            raise PromQLError(f"{node.op}() aggregates an instant vector")
        return "vector"
    if isinstance(node, Binary):
        kinds = {value_kind(node.lhs), value_kind(node.rhs)}
        if kinds & {"matrix", "string"}:
            raise PromQLError(f"operator {node.op} on a range vector or a string")
        if node.op in ("and", "or", "unless") and kinds != {"vector"}:
            raise PromQLError(f"{node.op} needs vectors on both sides")
        return "vector" if "vector" in kinds else "scalar"
    raise AssertionError(node)


def parse(expr: str) -> Any:
    """The syntax tree of ``expr``, type-checked."""
    tree = Parser(expr).parse()
    value_kind(tree)
    return tree


def selectors(node: Any) -> list[tuple[Selector, bool]]:
    """Every vector selector, with whether a counter function (rate, increase, ...) reads it."""
    found: list[tuple[Selector, bool]] = []

    def walk(n: Any, counter: bool) -> None:
        if isinstance(n, Selector):
            found.append((n, counter))
        elif isinstance(n, Call):
            for a in n.args:
                walk(a, counter or n.func in COUNTER_FUNCTIONS)
        elif isinstance(n, Agg):
            for a in n.args:
                walk(a, counter)
        elif isinstance(n, Binary):
            walk(n.lhs, counter)
            walk(n.rhs, counter)
        elif isinstance(n, Subquery):
            walk(n.expr, counter)

    walk(node, False)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names of an expression, as written (``_bucket``, ``_total``... included)."""
    return {s.name for s, _ in selectors(parse(expr))}


# --- what the dashboards ask for ----------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those folded into collapsed rows."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable (``label_values(<expr>, label)``)."""
    out = [(f"panel {p['title']!r} target {t['refId']}", t["expr"])
           for p in all_panels(dashboard) for t in p.get("targets", [])]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
            assert m, f"variable {v['name']}: only label_values(<selector>, <label>) is used here"
            out.append((f"variable {v['name']}", f"group by ({m[2]}) ({m[1]})"))
    return out


def variables_used(text: str) -> set[str]:
    return {a or b for a, b in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", text)} - {""}


class TestProvisioning:
    def test_the_chart_ships_the_four_dashboards_under_distinct_uids(self) -> None:
        assert [p.stem for p in DASHBOARDS] == ["infrastructure-health", "model-performance", "org-usage-and-cost",
                                                "system-overview"]
        uids = [load(p)["uid"] for p in DASHBOARDS]
        assert len(set(uids)) == len(uids)

    def test_each_fits_in_one_configmap(self) -> None:
        # One ConfigMap per dashboard (templates/configmap-dashboards.yaml); the API server takes at most 1 MiB.
        assert all(p.stat().st_size < 900_000 for p in DASHBOARDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
class TestDashboardStructure:
    def test_is_a_dashboard_grafana_can_provision(self, path: Path) -> None:
        d = load(path)
        assert re.fullmatch(r"aiaas-[a-z0-9-]{1,34}", d["uid"]), "uids are at most 40 characters"
        assert d["title"].startswith("aiaas / ")
        assert 36 <= d["schemaVersion"] <= 41
        assert d["id"] is None, "a provisioned dashboard must not carry a database id"
        ds = [v for v in d["templating"]["list"] if v["name"] == "datasource"]
        assert len(ds) == 1 and ds[0]["type"] == "datasource" and ds[0]["query"] == "prometheus"

    def test_panels_have_unique_ids_a_place_and_queries(self, path: Path) -> None:
        panels = all_panels(load(path))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
        cells: set[tuple[int, int]] = set()
        for p in panels:
            g = p["gridPos"]
            assert g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"panel {p['title']!r} overlaps another"
            cells |= mine
            if p["type"] in ("row", "text"):
                assert not p.get("targets"), p["title"]
                continue
            assert p["title"] and p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], f"panel {p['title']!r} has no query"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
            for t in p["targets"]:
                assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}", p["title"]

    def test_every_variable_used_is_defined(self, path: Path) -> None:
        d = load(path)
        defined = {v["name"] for v in d["templating"]["list"]} | GRAFANA_VARIABLES
        used = set().union(*(variables_used(q) for _, q in queries(d)))
        assert used - defined == set()
        # Grafana resolves a variable from those above it in the list.
        names = [v["name"] for v in d["templating"]["list"]]
        for i, v in enumerate(d["templating"]["list"]):
            if v["type"] == "query":
                assert variables_used(v["query"]["query"]) <= set(names[:i]), v["name"]

    def test_every_expression_parses(self, path: Path) -> None:
        errors = []
        for where, q in queries(load(path)):
            try:
                parse(q)
            except PromQLError as exc:
                errors.append(f"{where}: {exc}\n    {q}")
        assert not errors, "\n".join(errors)


class TestParser:
    def test_extracts_metric_names_not_functions_labels_or_keywords(self) -> None:
        q = ('histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{model=~"$m", le!="x"}[$__rate_interval])))'
             ' / on (model) group_left (kind) max without (pod) (b offset 5m) or vector(0) > bool 1')
        assert metric_names(q) == {"a_bucket", "b"}
        assert metric_names("max_over_time(rate(c_total[5m])[1h:1m] @ 100) - -d") == {"c_total", "d"}

    @pytest.mark.parametrize("bad", [
        "sum(rate(x[5m])", "sum(rate(x[5m]))))", 'x{a="1"', "rate(x)", "sum(x[5m])", "nosuch(x)",
        "sum by (a (x)", 'x{a=="b"}', "x y", "topk(x)", "histogram_quantile(x)", "x[$__rate_interval",
        "x and 1", "rate(x[5m]) [1m]",
    ])
    def test_refuses_what_prometheus_refuses(self, bad: str) -> None:
        with pytest.raises(PromQLError):
            parse(bad)


# --- what the roles export ----------------------------------------------------------------------------------


class Series(NamedTuple):
    family: str
    type: str
    labels: frozenset[str]


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("", "_sum", "_count"), "info": ("_info",)}


def exported_series(texts: list[str]) -> dict[str, Series]:
    """Each queryable series name -> its family, the family's type and label names, from exposition texts.

    Outside the app's own ``aiaas_*`` families only the process collector's count: under PROMETHEUS_MULTIPROC_DIR
    (as the chart runs every role) that is all /metrics serves besides them.
    """
    from prometheus_client import REGISTRY

    process = {f.name for f in text_string_to_metric_families(generate_latest(_process_registry()).decode())}
    out: dict[str, Series] = {}
    for fam in (f for text in texts for f in text_string_to_metric_families(text)):
        if not fam.name.startswith("aiaas_") and fam.name not in process:
            continue
        suffixes = SUFFIXES.get(fam.type, ("",))
        if fam.samples:
            labels = set().union(*(s.labels for s in fam.samples))
        else:  # a labelled metric nothing has touched yet: the label names its collector was declared with
            collector = REGISTRY._names_to_collectors.get(fam.name + suffixes[0])
            labels = set(getattr(collector, "_labelnames", ())) | ({"le"} if fam.type == "histogram" else set())
        for suffix in suffixes:
            name = fam.name + suffix
            have = frozenset(labels - {"le"} if suffix in ("_sum", "_count") else labels)
            out[name] = Series(fam.name, fam.type, have | (out[name].labels if name in out else frozenset()))
    return out


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def labels_of(node: Any, series: dict[str, Series], errors: list[str]) -> frozenset[str]:
    """The label names ``node``'s result may carry; notes each label used that cannot be there."""

    def need(labels: tuple[str, ...] | set[str], have: frozenset[str], what: str) -> None:
        missing = set(labels) - have - TARGET_LABELS - {"__name__"}
        if missing:
            errors.append(f"{what} uses label(s) {sorted(missing)}, not on {sorted(have)}")

    if isinstance(node, Literal):
        return frozenset()
    if isinstance(node, Selector):
        s = series.get(node.name)
        if s is None:  # reported as not exported
            return frozenset()
        need({m[0] for m in node.matchers}, s.labels, node.name)
        return s.labels
    if isinstance(node, Subquery):
        return labels_of(node.expr, series, errors)
    if isinstance(node, Call):
        inner = [labels_of(a, series, errors) for a in node.args]
        vec = next((have for a, have in zip(node.args, inner, strict=True) if not isinstance(a, Literal)),
                   frozenset())
        if node.func == "histogram_quantile":
            need({"le"}, vec, "histogram_quantile()")
            return vec - {"le"}
        if node.func in ("label_replace", "label_join"):
            return vec | {node.args[1].value.strip("\"'`")}
        return frozenset() if node.func == "vector" else vec
    if isinstance(node, Agg):
        inner = labels_of(node.args[-1], series, errors)
        if node.by is None:
            return inner if node.op in ("topk", "bottomk", "limitk", "limit_ratio") else frozenset()
        need(node.by, inner, f"{node.op} by/without")
        if node.op in ("topk", "bottomk", "limitk", "limit_ratio"):
            return inner
        return inner - set(node.by) if node.without else frozenset(node.by)
    if isinstance(node, Binary):
        lhs, rhs = labels_of(node.lhs, series, errors), labels_of(node.rhs, series, errors)
        if node.on is not None:
            need(node.on, lhs, f"left side of {node.op} on(...)")
            need(node.on, rhs, f"right side of {node.op} on(...)")
        if node.group == "left":
            need(node.group_labels, rhs, "group_left(...)")
            return lhs | set(node.group_labels)
        if node.group == "right":
            need(node.group_labels, lhs, "group_right(...)")
            return rhs | set(node.group_labels)
        return lhs | rhs if node.op == "or" else (lhs if not isinstance(node.lhs, Literal) else rhs)
    raise AssertionError(node)


def problems(expr: str, series: dict[str, Series], *, variable: bool = False) -> list[str]:
    """Metrics the roles do not export, gauges read as counters and the reverse, labels that are not there.

    A variable's query only lists label values, so it may name a counter without rate().
    """
    try:
        tree = parse(expr)
    except PromQLError as exc:
        return [f"does not parse: {exc}"]
    errors: list[str] = []
    for sel, in_counter_function in selectors(tree):
        s = series.get(sel.name)
        if s is None:
            errors.append(f"{sel.name} is not exported by any role")
            continue
        counter_like = s.type in ("counter", "histogram")  # a histogram's _bucket, _sum and _count only grow
        if in_counter_function and not counter_like:
            errors.append(f"{sel.name} is a {s.type}: rate() and increase() need a counter")
        if counter_like and not in_counter_function and not variable:
            errors.append(f"{sel.name} is a {s.type} read raw: wrap it in rate() or increase()")
    labels_of(tree, series, errors)
    return errors


# --- the roles, running -------------------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One failed upstream call opens a breaker, so the breaker series carry samples too.
    return msgspec.structs.replace(settings, inference_breaker_failures=1)


async def _seed(settings: Settings, upstream: FakeUpstream, prefix: str) -> str:
    """A user, an org, an inference key and two models (one answers, one fails); returns the key."""
    container = Container(settings, role="api")
    try:
        async with container.db.unit_of_work("auth") as s:
            user = await auth_api.create_user(s, email=f"{prefix}@example.com", password=uuid.uuid4().hex,
                                              rounds=FIXTURE_BCRYPT_ROUNDS, actor=None)
        async with container.db.unit_of_work("orgs") as s:
            org = await orgs_api.create_org(s, name=prefix, owner_id=user.id,
                                            actor=Principal(kind="session", user_id=user.id))
        owner = Principal(kind="session", user_id=user.id, org_id=org.id, org_role=OrgRole.OWNER)
        async with container.db.unit_of_work("auth") as s:
            key = await auth_api.create_key(s, org_id=org.id, actor=owner,
                                            data=auth_api.KeyCreate(name="dashboards", scopes=[Scope.INFERENCE]))
        async with container.db.unit_of_work("inference") as s:
            for name, upstream_model in (("ok", "fake"), ("error", "error-500")):
                dep = DeploymentSpec(name="d", upstream_model=upstream_model, base_url=upstream.base_url)
                await catalog_service.create_model(session=s, spec=ModelSpec(name=f"{prefix}/{name}",
                                                                             deployments=[dep]))
        await container.catalog.refresh_models([f"{prefix}/ok", f"{prefix}/error"])
        return key.key
    finally:
        await container.redis.aclose()
        await container.db.dispose()


async def _unseed(settings: Settings, prefix: str) -> None:
    """Takes the models out of the session's catalog again (those that were made)."""
    container = Container(settings, role="api")
    try:
        for name in ("ok", "error"):
            with contextlib.suppress(NotFound):
                async with container.db.unit_of_work("inference") as s:
                    await catalog_service.delete_model(session=s, name=f"{prefix}/{name}")
    finally:
        await container.redis.aclose()
        await container.db.dispose()


class TestDashboardsUseExportedMetrics:
    async def test_every_series_and_label_is_exported(self, settings: Settings, api_client: AsyncTestClient[Any],
                                                      streamer_client: AsyncTestClient[Any],
                                                      worker_client: AsyncTestClient[Any]) -> None:
        prefix = f"dash-{uuid.uuid4().hex[:8]}"
        upstream = FakeUpstream(free_port()).start()
        try:
            key = await _seed(settings, upstream, prefix)
            auth = {"authorization": f"Bearer {key}"}
            body = {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                    "stream_options": {"include_usage": True}}
            r = await streamer_client.post("/v1/chat/completions", json={**body, "model": f"{prefix}/ok"},
                                           headers=auth)
            assert r.status_code == 200 and "[DONE]" in r.text, r.text
            r = await streamer_client.post("/v1/chat/completions", json={**body, "model": f"{prefix}/error"},
                                           headers=auth)
            assert r.status_code == 502, r.text  # the upstream answered 500: a failure the breaker counts
            for _ in range(50):  # the worker's ledger takes the completion events off the queue
                if "aiaas_usage_ledger_events_total{" in (await worker_client.get("/metrics")).text:
                    break
                await asyncio.sleep(0.1)
            texts = [(await c.get("/metrics")).text for c in (api_client, streamer_client, worker_client)]
        finally:
            upstream.stop()
            await _unseed(settings, prefix)
        series = exported_series(texts)
        assert "aiaas_inference_ttfb_seconds_bucket" in series and "process_cpu_seconds_total" in series
        errors = [f"{path.stem}: {where}: {e}\n    {q}" for path in DASHBOARDS for where, q in queries(load(path))
                  for e in problems(q, series, variable=where.startswith("variable"))]
        assert not errors, "\n".join(errors)
