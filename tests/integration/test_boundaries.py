"""import-linter keeps the contexts apart: the tree passes, and a planted cross-context import fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd / "src")}
    return subprocess.run([str(LINT), "--no-cache", str(cwd / "importlinter.ini")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "importlinter.ini", tmp_path / "importlinter.ini")
    return tmp_path


class TestImportContracts:
    def test_tree_keeps_every_contract(self, tree_copy: Path) -> None:
        r = _lint(tree_copy)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "0 broken" in r.stdout

    @pytest.mark.parametrize(
        ("where", "line", "contract"),
        [
            ("orgs/planted.py", "from aiaas.auth import models", "Contexts meet only through api and events"),
            ("kernel/planted.py", "from aiaas.usage import api", "Entrypoints over contexts over kernel"),
            ("auth/planted.py", "from aiaas.inference import api", "Context dependencies point one way"),
            ("usage/models_extra.py", "from aiaas.usage import http", "Layers inside each context"),
        ],
    )
    def test_planted_import_breaks_a_contract(self, tree_copy: Path, where: str, line: str, contract: str) -> None:
        target = tree_copy / "src" / "aiaas" / where
        if where.endswith("models_extra.py"):
            (tree_copy / "src" / "aiaas" / "usage" / "http.py").write_text('"""planted"""\n')
            target = tree_copy / "src" / "aiaas" / "usage" / "models.py"
            target.write_text(target.read_text() + f"\n{line}  # noqa\n")
        else:
            target.write_text(f"{line}  # noqa\n")
        r = _lint(tree_copy)
        assert r.returncode != 0
        assert f"{contract} BROKEN" in r.stdout, r.stdout
