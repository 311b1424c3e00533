"""Ownership rules import-linter cannot see: every module of a context is in a layer of contract 5, and no
context names another context's Redis keys (each key has one owner, asked through its ``api``)."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "aiaas"
CONTEXTS = ("auth", "orgs", "inference", "usage", "analytics")
# Functions that build Redis key names from a context name (kernel.redis.Keys and its tagged keys).
KEY_BUILDERS = {"keys", "_keys", "key_of", "tagged", "Keys"}


def _layer_modules() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "importlinter.ini")
    layers = cfg["importlinter:contract:context-internal-layers"]["layers"]
    return set(re.findall(r"[a-z_]+", layers))


def _context_files() -> list[tuple[str, Path]]:
    return [(ctx, path) for ctx in CONTEXTS for path in sorted((SRC / ctx).rglob("*.py"))]


class TestEveryModuleIsInALayer:
    @pytest.mark.parametrize(("context", "path"), _context_files(), ids=lambda v: str(v).split("src/")[-1])
    def test_module(self, context: str, path: Path) -> None:
        rel = path.relative_to(SRC / context)
        top = rel.parts[0].removesuffix(".py")
        if top == "__init__":
            return
        assert top in _layer_modules(), f"aiaas.{context}.{top} is in no layer of importlinter.ini contract 5"


def _key_contexts(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, context) of every call that builds a Redis key name for a literal context."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        first = node.args[0]
        if name in KEY_BUILDERS and isinstance(first, ast.Constant) and first.value in CONTEXTS:
            found.append((node.lineno, first.value))
    return found


def _literal_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, context) of string literals that spell a context's key prefix (``"usage:rpm:..."``; one colon
    alone is a permission, ``"usage:read"``)."""
    pattern = re.compile(rf"^({'|'.join(CONTEXTS)}):[a-z{{][^:]*:")
    return [(n.lineno, m.group(1)) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and (m := pattern.match(n.value))]


class TestRedisKeysHaveOneOwner:
    @pytest.mark.parametrize(("context", "path"), _context_files(), ids=lambda v: str(v).split("src/")[-1])
    def test_a_context_names_only_its_own_keys(self, context: str, path: Path) -> None:
        tree = ast.parse(path.read_text())
        foreign = [(line, ctx) for line, ctx in _key_contexts(tree) + _literal_keys(tree) if ctx != context]
        assert not foreign, f"{path.relative_to(ROOT)} builds Redis keys of another context: {foreign}"

    def test_the_check_sees_a_foreign_key(self) -> None:
        tree = ast.parse('k = keys("usage", "rl", org)\nraw = "auth:principal:x"\nt = self._keys.tagged("orgs", 1)')
        assert sorted(ctx for _, ctx in _key_contexts(tree) + _literal_keys(tree)) == ["auth", "orgs", "usage"]

    @pytest.mark.parametrize("path", [*sorted((SRC / "kernel").rglob("*.py")),
                                      *sorted((SRC / "entrypoints").rglob("*.py"))],
                             ids=lambda v: str(v).split("src/")[-1])
    def test_the_kernel_and_the_composition_root_name_no_context_key(self, path: Path) -> None:
        tree = ast.parse(path.read_text())
        assert not _key_contexts(tree) + _literal_keys(tree)
