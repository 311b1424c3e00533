"""The supply-chain checks of .ci/run catch what they are there for: a planted finding fails each."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestBandit:
    def test_a_planted_shell_injection_fails_it(self, tmp_path: Path) -> None:
        planted = tmp_path / "planted.py"
        planted.write_text("import subprocess\n\n\ndef run(cmd: str) -> None:\n    subprocess.call(cmd, shell=True)\n")
        r = subprocess.run([str(BIN / "bandit"), "-q", "-c", str(ROOT / "pyproject.toml"), str(planted)],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 1 and "B602" in r.stdout, r.stdout


class TestSecretsScan:
    def _repo(self, tmp_path: Path, text: str) -> Path:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        (tmp_path / "settings.py").write_text(text)
        return tmp_path

    def _scan(self, repo: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / ".ci" / "scan_secrets.py")], cwd=repo,
                              capture_output=True, text=True, check=False)

    def test_a_planted_hard_coded_secret_fails_it(self, tmp_path: Path) -> None:
        # An AWS-shaped access key and a private key header, as someone might paste them.
        planted = 'AWS_ACCESS_KEY_ID = "AKIA' + "QYLPMN5HHHFPZAM2" + '"\n'
        r = self._scan(self._repo(tmp_path, planted))
        assert r.returncode == 1, r.stdout
        assert "secret? settings.py:1: AWS Access Key" in r.stdout

    def test_a_clean_tree_passes(self, tmp_path: Path) -> None:
        r = self._scan(self._repo(tmp_path, 'TIMEOUT_SECONDS = 30\n'))
        assert r.returncode == 0 and "files clean" in r.stdout, r.stdout


class TestRuntimeSbom:
    def test_only_what_the_image_installs_is_listed(self) -> None:
        sbom = _load("sbom_runtime")
        keep = sbom.runtime_closure()
        assert {"aiaas", "litestar", "asyncpg", "llama-cpp-python", "uvicorn"} <= keep
        assert not {"pytest", "ruff", "mkdocs", "playwright", "bandit"} & keep
        bom = {"metadata": {"component": {"bom-ref": "root", "name": "aiaas"}},
               "components": [{"bom-ref": r, "name": n} for r, n in
                              (("a", "litestar"), ("b", "pytest"), ("c", "llama_cpp_python"))],
               "dependencies": [{"ref": "root", "dependsOn": ["a", "b", "c"]}, {"ref": "b", "dependsOn": []}]}
        out = sbom.narrow(bom, keep)
        assert [c["name"] for c in out["components"]] == ["litestar", "llama_cpp_python"]
        assert out["dependencies"] == [{"ref": "root", "dependsOn": ["a", "c"]}]
