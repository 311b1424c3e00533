"""The AWS Terraform (``terraform/modules/aws``, the example roots ``terraform/examples/aws`` and
``terraform/examples/aws-bootstrap``), checked by reading what python-hcl2 parses: no provider binary is
reachable here, so ``terraform validate`` cannot run (see terraform/README.md).

Each check is a function from a copy of ``terraform/`` to the problems it finds:

- every variable has a description and a type; a variable without a default also has a validation;
- the data stores (RDS PostgreSQL, ElastiCache Redis, Amazon MQ for RabbitMQ) are not publicly accessible,
  live in subnets with no route to the internet, are encrypted at rest and in transit (RDS
  ``storage_encrypted`` with a KMS key and ``rds.force_ssl``; ElastiCache transit and at-rest encryption
  and an AUTH token; Amazon MQ private, AMQPS), and take generated passwords;
- each data store's security group lets in only its own port, only from the EKS nodes' security group;
  no security group anywhere lets in 0.0.0.0/0;
- secrets live in Secrets Manager under a rotated KMS key, no secret value is a literal, the entry's keys
  are the settings aiaas reads (those charts/argocd's ExternalSecret expects), no output hands one out;
- the example root keeps its state in an encrypted S3 backend locked in DynamoDB;
- the example root calls both modules with every variable they require and none they lack, respects the
  rules of a module that configures its own providers, and uses only outputs the modules have.

Each test runs its check on the repository's files (no problem) and on a copy with one planted mistake
(that mistake found), so no check passes by reading nothing.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from support import missing_tool

try:
    import hcl2
except ImportError:  # pragma: no cover - the test extra installs it
    hcl2 = None

ROOT = Path(__file__).resolve().parents[3]
TF = ROOT / "terraform"
AWS, EXAMPLE, BOOTSTRAP = "modules/aws", "examples/aws", "examples/aws-bootstrap"
RELEASE = "."  # the directory terraform/ itself: the chart install
ARGOCD_EXTERNAL_SECRET = ROOT / "charts" / "argocd" / "production" / "externalsecret.yaml"
MINI_CHART = TF / EXAMPLE / "charts" / "aiaas-secrets"
AMQPS_PORT = 5671  # Amazon MQ for RabbitMQ listens on AMQPS only; the broker has no port argument
OPEN = {"0.0.0.0/0", "::/0"}
META_ARGS = {"source", "version", "providers", "count", "for_each", "depends_on"}


def _unquote(node: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and labels: drop them, and its bookkeeping keys."""
    if isinstance(node, dict):
        return {_unquote(k): _unquote(v) for k, v in node.items() if k not in ("__comments__", "__is_block__")}
    if isinstance(node, list):
        return [_unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


@dataclass(frozen=True)
class Module:
    """Every top-level block of one directory's ``*.tf`` files, merged."""

    path: Path
    docs: dict[str, dict[str, Any]]

    def _all(self, kind: str) -> Iterator[Any]:
        for doc in self.docs.values():
            yield from doc.get(kind, [])

    def resources(self, rtype: str, kind: str = "resource") -> dict[str, dict[str, Any]]:
        return {name: body for block in self._all(kind) for t, inst in block.items() if t == rtype
                for name, body in inst.items()}

    def named(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for block in self._all(kind) for name, body in block.items()}

    @property
    def locals(self) -> dict[str, Any]:
        return {k: v for block in self._all("locals") for k, v in block.items()}

    @property
    def terraform(self) -> list[dict[str, Any]]:
        return list(self._all("terraform"))

    @property
    def has_provider_blocks(self) -> bool:
        return any(True for _ in self._all("provider"))


@functools.cache
def _parse(text: str) -> dict[str, Any]:
    """One file's text parsed (cached: the planted copies differ from the repository in one file only;
    nothing mutates what it returns)."""
    return _unquote(hcl2.loads(text))


def load(path: Path) -> Module:
    if hcl2 is None:
        missing_tool("python-hcl2 (pip install -e '.[test]')")
    docs = {tf.name: _parse(tf.read_text()) for tf in sorted(path.glob("*.tf"))}
    assert docs, f"no .tf file in {path}"
    return Module(path, docs)


def expr(value: Any) -> str | None:
    """The expression of a pure interpolation (``"${aws_kms_key.this.arn}"``), else None (a literal)."""
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{(.*)\}", value, re.S)
        return m[1] if m else None
    return None


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed value, however nested."""
    if isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def refs(node: Any, rtype: str) -> set[str]:
    """Names of the ``rtype`` resources (``aws_subnet``, ``local``, ``var``, ...) a value refers to."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(rtype)}\.([A-Za-z_][\w-]*)")
    return {m[1] for s in strings(node) for m in pattern.finditer(s)}


def resolve(module: Module, value: Any) -> Any:
    """A literal as it is; ``local.x`` as that local; ``var.x`` as that variable's default."""
    e = expr(value)
    if e is None:
        return value
    if m := re.fullmatch(r"local\.(\w+)", e):
        return resolve(module, module.locals.get(m[1]))
    if m := re.fullmatch(r"var\.(\w+)", e):
        return module.named("variable").get(m[1], {}).get("default")
    return value


def _first(body: dict[str, Any], key: str) -> dict[str, Any]:
    blocks = body.get(key) or [{}]
    return blocks[0] if isinstance(blocks, list) else blocks


Check = Callable[[Path], list[str]]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


############################################################################
# Variables
############################################################################

@check
def variable_problems(tf: Path) -> list[str]:
    problems = []
    for where in (AWS, EXAMPLE, BOOTSTRAP, RELEASE):
        for name, body in load(tf / where).named("variable").items():
            if not body.get("description"):
                problems.append(f"{where}: variable {name} has no description")
            if not body.get("type"):
                problems.append(f"{where}: variable {name} has no type")
            if where != RELEASE and "default" not in body and not body.get("validation"):
                problems.append(f"{where}: required variable {name} has no validation")
    return problems


############################################################################
# Data stores
############################################################################

def _public_subnets(module: Module) -> set[str]:
    """aws_subnet resources associated with a route table that routes to an internet gateway."""
    routes = module.resources("aws_route")
    public_tables = {t for r in routes.values() if refs(r.get("gateway_id"), "aws_internet_gateway")
                     for t in refs(r.get("route_table_id"), "aws_route_table")}
    for name, table in module.resources("aws_route_table").items():
        if any(refs(route.get("gateway_id"), "aws_internet_gateway") for route in table.get("route", [])):
            public_tables.add(name)
    return {s for a in module.resources("aws_route_table_association").values()
            if refs(a.get("route_table_id"), "aws_route_table") & public_tables
            for s in refs(a.get("subnet_id"), "aws_subnet")}


def _generated(module: Module, value: Any, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a value is an expression that draws on a random_password (directly or through locals)."""
    if expr(value) is None and not (isinstance(value, str) and "${" in value):
        return False
    if refs(value, "random_password"):
        return True
    return any(_generated(module, module.locals.get(name), seen | {name})
               for name in refs(value, "local") - seen)


@check
def data_store_problems(tf: Path) -> list[str]:
    m = load(tf / AWS)
    problems: list[str] = []
    public = _public_subnets(m)
    if not public:
        problems.append("no public subnet found: cannot tell the data subnets from the public ones")

    def subnets_ok(what: str, value: Any) -> None:
        used = refs(value, "aws_subnet")
        if not used:
            problems.append(f"{what} names no subnet")
        if used & public:
            problems.append(f"{what} is in a public subnet ({sorted(used & public)})")

    groups = m.resources("aws_db_subnet_group")
    params = m.resources("aws_db_parameter_group")
    dbs = m.resources("aws_db_instance")
    if not dbs:
        problems.append("no aws_db_instance")
    for name, db in dbs.items():
        what = f"aws_db_instance.{name}"
        if db.get("engine") != "postgres":
            problems.append(f"{what} is not PostgreSQL")
        if db.get("storage_encrypted") is not True:
            problems.append(f"{what}: storage not encrypted")
        if not refs(db.get("kms_key_id"), "aws_kms_key"):
            problems.append(f"{what}: storage not encrypted with the module's KMS key")
        if db.get("publicly_accessible") is not False:
            problems.append(f"{what} is publicly accessible")
        if not _generated(m, db.get("password")):
            problems.append(f"{what}: password is not generated")
        if not refs(db.get("multi_az"), "var") or expr(db.get("multi_az")) is None:
            problems.append(f"{what}: multi_az is not a variable")
        if resolve(m, db.get("deletion_protection")) is not True:
            problems.append(f"{what}: deletion protection is off by default")
        retention = resolve(m, db.get("backup_retention_period"))
        if not isinstance(retention, int) or retention < 7:
            problems.append(f"{what}: backups kept fewer than 7 days ({retention!r})")
        for group in refs(db.get("db_subnet_group_name"), "aws_db_subnet_group"):
            subnets_ok(f"{what} (subnet group {group})", groups[group].get("subnet_ids"))
        if not refs(db.get("db_subnet_group_name"), "aws_db_subnet_group"):
            problems.append(f"{what} has no subnet group of the module")
        forced = [p for g in refs(db.get("parameter_group_name"), "aws_db_parameter_group")
                  for p in params[g].get("parameter", []) if p.get("name") == "rds.force_ssl"]
        if [str(p.get("value")) for p in forced] != ["1"]:
            problems.append(f"{what}: TLS not enforced (rds.force_ssl = 1 in its parameter group)")

    caches = m.resources("aws_elasticache_replication_group")
    subnet_groups = m.resources("aws_elasticache_subnet_group")
    if not caches:
        problems.append("no aws_elasticache_replication_group")
    for name, rg in caches.items():
        what = f"aws_elasticache_replication_group.{name}"
        if rg.get("transit_encryption_enabled") is not True:
            problems.append(f"{what}: transit encryption off")
        if rg.get("transit_encryption_mode", "required") != "required":
            problems.append(f"{what}: transit encryption only preferred")
        if rg.get("at_rest_encryption_enabled") is not True:
            problems.append(f"{what}: at-rest encryption off")
        if not refs(rg.get("kms_key_id"), "aws_kms_key"):
            problems.append(f"{what}: not encrypted with the module's KMS key")
        if not _generated(m, rg.get("auth_token")):
            problems.append(f"{what}: auth token is not generated")
        for group in refs(rg.get("subnet_group_name"), "aws_elasticache_subnet_group"):
            subnets_ok(f"{what} (subnet group {group})", subnet_groups[group].get("subnet_ids"))

    brokers = m.resources("aws_mq_broker")
    if not brokers:
        problems.append("no aws_mq_broker")
    for name, mq in brokers.items():
        what = f"aws_mq_broker.{name}"
        if mq.get("engine_type") != "RabbitMQ":
            problems.append(f"{what} is not RabbitMQ")
        if mq.get("publicly_accessible") is not False:
            problems.append(f"{what} is publicly accessible")
        subnets_ok(what, mq.get("subnet_ids"))
        if not mq.get("encryption_options"):
            problems.append(f"{what}: no encryption options")
        if not all(_generated(m, u.get("password")) for u in mq.get("user", [{}])):
            problems.append(f"{what}: a user's password is not generated")

    # In transit from aiaas's side: the URLs it is given ask for TLS.
    urls = {"database_url": "?ssl=require", "redis_url": '"rediss://', "amqp_url": '"amqps://'}
    for local, marker in urls.items():
        if marker not in str(m.locals.get(local)):
            problems.append(f"local.{local} does not ask for TLS ({marker.strip(chr(34))})")
    return problems


############################################################################
# Security groups
############################################################################

def _ingress_rules(module: Module) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(where, security group it opens, rule) for every ingress rule, whatever resource spells it."""
    rules: list[tuple[str, str | None, dict[str, Any]]] = []
    for name, r in module.resources("aws_vpc_security_group_ingress_rule").items():
        sg = next(iter(refs(r.get("security_group_id"), "aws_security_group")), None)
        rules.append((f"aws_vpc_security_group_ingress_rule.{name}", sg, r))
    for name, r in module.resources("aws_security_group_rule").items():
        if r.get("type") == "ingress":
            sg = next(iter(refs(r.get("security_group_id"), "aws_security_group")), None)
            rules.append((f"aws_security_group_rule.{name}", sg, r))
    for name, sg in module.resources("aws_security_group").items():
        for r in sg.get("ingress", []):
            rules.append((f"aws_security_group.{name} (inline ingress)", name, r))
    return rules


def _cidrs(rule: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for key in ("cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks", "prefix_list_id", "prefix_list_ids"):
        value = rule.get(key)
        if value is not None:
            out |= set(value) if isinstance(value, list) else {str(value)}
    return out


@check
def security_group_problems(tf: Path) -> list[str]:
    m = load(tf / AWS)
    problems: list[str] = []
    nodes = {sg for lt in m.resources("aws_launch_template").values()
             for sg in refs(lt.get("vpc_security_group_ids"), "aws_security_group")}
    if not nodes:
        problems.append("the node launch template names no security group of the module")
    rules = _ingress_rules(m)
    stores = [("aws_db_instance", "vpc_security_group_ids"),
              ("aws_elasticache_replication_group", "security_group_ids"),
              ("aws_mq_broker", "security_groups")]
    for rtype, attr in stores:
        for name, body in m.resources(rtype).items():
            what = f"{rtype}.{name}"
            port = AMQPS_PORT if rtype == "aws_mq_broker" else resolve(m, body.get("port"))
            groups = refs(body.get(attr), "aws_security_group")
            if not groups:
                problems.append(f"{what} has no security group of the module")
            if groups & nodes:
                problems.append(f"{what} shares the nodes' security group")
            for sg in groups:
                mine = [(w, r) for w, g, r in rules if g == sg]
                if not mine:
                    problems.append(f"{what}: security group {sg} lets nothing in, not even the nodes")
                for w, r in mine:
                    ports = {resolve(m, r.get("from_port")), resolve(m, r.get("to_port"))}
                    if ports != {port}:
                        problems.append(f"{w} opens {sorted(map(str, ports))}, not only {what}'s port {port}")
                    if str(r.get("ip_protocol", r.get("protocol"))) not in ("tcp", "6"):
                        problems.append(f"{w} is not TCP only")
                    sources = (refs(r.get("referenced_security_group_id"), "aws_security_group")
                               | refs(r.get("source_security_group_id"), "aws_security_group")
                               | refs(r.get("security_groups"), "aws_security_group"))
                    if not sources or not sources <= nodes or _cidrs(r) or r.get("self"):
                        problems.append(f"{w} admits more than the nodes' security group {sorted(nodes)}")
    return problems


@check
def open_ingress_problems(tf: Path) -> list[str]:
    problems = []
    for where in (AWS, EXAMPLE, BOOTSTRAP, RELEASE):
        for w, _, r in _ingress_rules(load(tf / where)):
            if _cidrs(r) & OPEN:
                problems.append(f"{where}: {w} lets in the whole internet")
    return problems


############################################################################
# Secrets
############################################################################

def _setting_names() -> set[str]:
    from aiaas.kernel.config import Settings

    # AIAAS_BOOTSTRAP_ADMIN_PASSWORD is read by `aiaas bootstrap`, not by the settings object.
    return {f"AIAAS_{f.name.upper()}" for f in msgspec.structs.fields(Settings)} | {"AIAAS_BOOTSTRAP_ADMIN_PASSWORD"}


def _argocd_keys() -> set[str]:
    """The keys charts/argocd's ExternalSecret says the secret store's entry holds (its header comment)."""
    comment = "\n".join(line for line in ARGOCD_EXTERNAL_SECRET.read_text().splitlines() if line.startswith("#"))
    return set(re.findall(r"AIAAS_[A-Z_]+", comment))


@check
def secret_problems(tf: Path) -> list[str]:
    m = load(tf / AWS)
    problems: list[str] = []
    for name, key in m.resources("aws_kms_key").items():
        if key.get("enable_key_rotation") is not True:
            problems.append(f"aws_kms_key.{name} is not rotated")
    secrets = m.resources("aws_secretsmanager_secret")
    if not secrets:
        problems.append("no aws_secretsmanager_secret")
    for name, secret in secrets.items():
        if not refs(secret.get("kms_key_id"), "aws_kms_key"):
            problems.append(f"aws_secretsmanager_secret.{name} is not encrypted with the module's KMS key")
    versions = m.resources("aws_secretsmanager_secret_version")
    if not versions:
        problems.append("no aws_secretsmanager_secret_version")
    for name, version in versions.items():
        e = expr(version.get("secret_string")) or ""
        whole = re.fullmatch(r"jsonencode\(local\.(\w+)\)", e)
        if not whole or not isinstance(m.locals.get(whole[1]), dict):
            problems.append(f"aws_secretsmanager_secret_version.{name}: secret_string is not jsonencode of a local map")
            continue
        entry = m.locals[whole[1]]
        for key, value in entry.items():
            if not _generated(m, value):
                problems.append(f"secret {key} is not generated (a literal, or made of no random_password)")
        if unknown := set(entry) - _setting_names():
            problems.append(f"secret keys {sorted(unknown)} are settings aiaas does not read")
        if missing := _argocd_keys() - set(entry):
            problems.append(f"secret keys {sorted(missing)} that charts/argocd's ExternalSecret expects are missing")
    leaky = re.compile(r"random_password\.|local\.(app_secret|database_url|redis_url|amqp_url)\b")
    for where in (AWS, EXAMPLE):
        for name, out in load(tf / where).named("output").items():
            value = re.sub(r"keys\(local\.app_secret\)", "", str(out.get("value")))
            if leaky.search(value) or "secret_string" in value:
                problems.append(f"{where}: output {name} hands out a secret")
    return problems


############################################################################
# Remote state
############################################################################

@check
def backend_problems(tf: Path) -> list[str]:
    m = load(tf / EXAMPLE)
    problems: list[str] = []
    backends = {name: body for t in m.terraform for b in t.get("backend", []) for name, body in b.items()}
    if list(backends) != ["s3"]:
        problems.append(f"the example root's backend is {sorted(backends)}, not s3")
    settings = dict(backends.get("s3", {}))
    # In the block itself, so that a backend.hcl that forgets it still encrypts.
    if settings.get("encrypt") is not True:
        problems.append("the backend block does not encrypt the state (encrypt = true)")
    example = tf / EXAMPLE / "backend.hcl.example"
    if example.exists():
        settings.update(_parse(example.read_text()))
    else:
        problems.append("no backend.hcl.example")
    if settings.get("encrypt") is not True:
        problems.append("backend.hcl.example turns the state's encryption off")
    for key in ("bucket", "key", "region", "dynamodb_table", "kms_key_id"):
        if not settings.get(key):
            problems.append(f"the backend settings lack {key}")
    return problems


############################################################################
# The example root composes the two modules
############################################################################

@check
def composition_problems(tf: Path) -> list[str]:
    example = load(tf / EXAMPLE)
    problems: list[str] = []
    calls = example.named("module")
    targets = {name: (tf / EXAMPLE / call["source"]).resolve() for name, call in calls.items()}
    if sorted(targets.values()) != sorted([(tf / AWS).resolve(), (tf / RELEASE).resolve()]):
        problems.append(f"the example root calls {sorted(map(str, targets.values()))}, not the AWS and release modules")
    modules = {name: load(path) for name, path in targets.items() if path.is_dir()}
    for name, target in modules.items():
        call = calls[name]
        declared = target.named("variable")
        required = {v for v, body in declared.items() if "default" not in body}
        if missing := required - set(call):
            problems.append(f"module {name} lacks required variables {sorted(missing)}")
        if unknown := set(call) - set(declared) - META_ARGS:
            problems.append(f"module {name} is given variables it does not declare: {sorted(unknown)}")
        if target.has_provider_blocks and (forbidden := set(call) & {"count", "for_each", "depends_on", "providers"}):
            problems.append(f"module {name} configures its own providers, so it cannot take {sorted(forbidden)}")
        if call.get("create_secret") is False and not call.get("existing_secret_name"):
            problems.append(f"module {name} creates no Secret and names none (existing_secret_name)")
    # Every module output the example uses exists (what terraform validate would say).
    for doc in example.docs.values():
        for text in strings(doc):
            for mod, output in re.findall(r"(?<![\w.])module\.(\w+)\.(\w+)", text):
                if mod not in modules:
                    problems.append(f"module.{mod} is not called")
                elif output not in modules[mod].named("output"):
                    problems.append(f"module.{mod} has no output {output}")
    return problems


############################################################################
# Tests
############################################################################

@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_repository_passes_the_check(name: str) -> None:
    assert CHECKS[name](TF) == []


# (check, file under terraform/, text to replace ("" appends), replacement, a word of the problem expected)
PLANTED = [
    ("variable_problems", f"{AWS}/variables.tf", '  type        = string\n  default     = "aiaas"\n',
     '  default     = "aiaas"\n', "variable name has no type"),
    ("variable_problems", f"{EXAMPLE}/variables.tf", "", 'variable "x" {\n  type = string\n}\n',
     "variable x has no description"),
    ("variable_problems", f"{EXAMPLE}/variables.tf", "", 'variable "x" {\n  description = "x"\n  type = string\n}\n',
     "required variable x has no validation"),
    ("data_store_problems", f"{AWS}/data_stores.tf", "publicly_accessible    = false", "publicly_accessible    = true",
     "aws_db_instance.postgres is publicly accessible"),
    ("data_store_problems", f"{AWS}/data_stores.tf", "storage_encrypted     = true", "storage_encrypted     = false",
     "storage not encrypted"),
    ("data_store_problems", f"{AWS}/data_stores.tf", '    name  = "rds.force_ssl"\n    value = "1"',
     '    name  = "rds.force_ssl"\n    value = "0"', "TLS not enforced"),
    ("data_store_problems", f"{AWS}/data_stores.tf", "multi_az               = var.postgres_multi_az",
     "multi_az               = true", "multi_az is not a variable"),
    ("data_store_problems", f"{AWS}/data_stores.tf",
     '  subnet_ids  = aws_subnet.data[*].id\n  tags        = local.tags\n}\n\n'
     'resource "aws_db_parameter_group"',
     '  subnet_ids  = aws_subnet.public[*].id\n  tags        = local.tags\n}\n\n'
     'resource "aws_db_parameter_group"',
     "in a public subnet"),
    ("data_store_problems", f"{AWS}/data_stores.tf", "transit_encryption_enabled = true",
     "transit_encryption_enabled = false", "transit encryption off"),
    ("data_store_problems", f"{AWS}/data_stores.tf", "at_rest_encryption_enabled = true",
     "at_rest_encryption_enabled = false", "at-rest encryption off"),
    ("data_store_problems", f"{AWS}/data_stores.tf", "auth_token                 = random_password.redis.result",
     'auth_token                 = "a-token-in-git-0123456789"', "auth token is not generated"),
    ("data_store_problems", f"{AWS}/data_stores.tf", "publicly_accessible = false", "publicly_accessible = true",
     "aws_mq_broker.rabbitmq is publicly accessible"),
    ("data_store_problems", f"{AWS}/secrets.tf", "?ssl=require", "", "database_url does not ask for TLS"),
    ("security_group_problems", f"{AWS}/data_stores.tf",
     "to_port                      = local.redis_port", "to_port                      = 6380", "not only"),
    ("security_group_problems", f"{AWS}/data_stores.tf",
     "  to_port                      = local.postgres_port\n"
     "  referenced_security_group_id = aws_security_group.node.id",
     "  to_port                      = local.postgres_port\n"
     "  referenced_security_group_id = aws_security_group.redis.id",
     "admits more than the nodes'"),
    ("security_group_problems", f"{AWS}/data_stores.tf", "",
     'resource "aws_vpc_security_group_ingress_rule" "postgres_from_office" {\n'
     '  security_group_id = aws_security_group.postgres.id\n  ip_protocol = "tcp"\n  from_port = 5432\n'
     '  to_port = 5432\n  cidr_ipv4 = "10.0.0.0/8"\n}\n', "postgres_from_office admits more than"),
    ("open_ingress_problems", f"{AWS}/eks.tf", "",
     'resource "aws_vpc_security_group_ingress_rule" "node_https" {\n'
     '  security_group_id = aws_security_group.node.id\n  ip_protocol = "tcp"\n  from_port = 443\n'
     '  to_port = 443\n  cidr_ipv4 = "0.0.0.0/0"\n}\n', "lets in the whole internet"),
    ("secret_problems", f"{AWS}/main.tf", "enable_key_rotation     = true", "enable_key_rotation     = false",
     "is not rotated"),
    ("secret_problems", f"{AWS}/secrets.tf", '  kms_key_id              = aws_kms_key.this["secrets"].arn\n', "",
     "aws_secretsmanager_secret.app is not encrypted"),
    ("secret_problems", f"{AWS}/secrets.tf", "AIAAS_METRICS_TOKEN            = random_password.metrics_token.result",
     'AIAAS_METRICS_TOKEN            = "not-so-secret-token"', "secret AIAAS_METRICS_TOKEN is not generated"),
    ("secret_problems", f"{AWS}/secrets.tf", "AIAAS_AMQP_URL                 = local.amqp_url",
     "AIAAS_BROKER_URL               = local.amqp_url", "AIAAS_BROKER_URL"),
    ("secret_problems", f"{AWS}/outputs.tf", "", 'output "oops" {\n  value = random_password.redis.result\n}\n',
     "output oops hands out a secret"),
    ("backend_problems", f"{EXAMPLE}/versions.tf", "encrypt = true", "encrypt = false", "does not encrypt"),
    ("backend_problems", f"{EXAMPLE}/backend.hcl.example",
     'dynamodb_table = "aiaas-terraform-locks"          # lock table, partition key LockID (string)\n', "",
     "lack dynamodb_table"),
    ("composition_problems", f"{EXAMPLE}/main.tf", "  image_repository = var.image_repository\n", "",
     "lacks required variables ['image_repository']"),
    ("composition_problems", f"{EXAMPLE}/main.tf", "  worker_replicas   = var.worker_replicas\n",
     "  workers_replicas  = var.worker_replicas\n", "does not declare: ['workers_replicas']"),
    ("composition_problems", f"{EXAMPLE}/main.tf", '  source = "../.."\n',
     '  source = "../.."\n  depends_on = [helm_release.app_secret]\n', "cannot take ['depends_on']"),
    ("composition_problems", f"{EXAMPLE}/main.tf", "  existing_secret_name = terraform_data.app_secret_name.output\n",
     "", "names none"),
    ("composition_problems", f"{EXAMPLE}/providers.tf", "host                   = module.aws.cluster_endpoint",
     "host                   = module.aws.cluster_url", "module.aws has no output cluster_url"),
]


@pytest.mark.parametrize(("name", "file", "old", "new", "expected"), PLANTED,
                         ids=[f"{p[0]}-{i}" for i, p in enumerate(PLANTED)])
def test_the_check_finds_a_planted_mistake(tmp_path: Path, name: str, file: str, old: str, new: str,
                                           expected: str) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform"))
    path = copy / file
    text = path.read_text()
    if old:
        assert text.count(old) == 1, f"the text to plant the mistake in is not in {file} once"
        text = text.replace(old, new)
    else:
        text += "\n" + new
    path.write_text(text)
    problems = CHECKS[name](copy)
    assert any(expected in p for p in problems), problems


def test_every_check_is_planted() -> None:
    assert {p[0] for p in PLANTED} == set(CHECKS)


class TestExternalSecretChart:
    """The example's small chart renders a SecretStore and an ExternalSecret that turn the Secrets Manager
    entry into the Secret the release reads."""

    def test_it_materialises_the_entry_as_the_secret(self) -> None:
        from helm_support import helm, render

        if helm is None:
            missing_tool("helm-python-sdk (pip install -e '.[test]')")
        docs = render({"region": "eu-west-1", "entry": "aiaas/production", "secretName": "aiaas-env"},
                      chart=MINI_CHART, release="aiaas-secrets")
        (store,) = [d for d in docs if d["kind"] == "SecretStore"]
        (external,) = [d for d in docs if d["kind"] == "ExternalSecret"]
        assert store["spec"]["provider"]["aws"] == {"service": "SecretsManager", "region": "eu-west-1"}
        assert external["spec"]["secretStoreRef"] == {"kind": "SecretStore", "name": store["metadata"]["name"]}
        assert external["spec"]["target"]["name"] == "aiaas-env"
        assert external["spec"]["dataFrom"] == [{"extract": {"key": "aiaas/production"}}]
        assert {d["metadata"]["namespace"] for d in docs} == {"aiaas"}

    def test_the_example_feeds_it_the_entry_and_the_secret_the_release_reads(self) -> None:
        import yaml

        example = load(TF / EXAMPLE)
        release = example.resources("helm_release")["app_secret"]
        values = " ".join(strings(release.get("values")))
        given = dict(re.findall(r"(\w+)\s*=\s*([\w.]+)", values))
        assert set(given) <= set(yaml.safe_load((MINI_CHART / "values.yaml").read_text()))
        assert given["entry"] == "module.aws.app_secret_name"
        # The same variable names the Secret the ExternalSecret writes and the one the release reads.
        fed = example.resources("terraform_data")["app_secret_name"]
        assert given["secretName"] == expr(fed["input"]) == "var.secret_name"
        release_call = example.named("module")["release"]
        assert expr(release_call["existing_secret_name"]) == "terraform_data.app_secret_name.output"
