""".ci/checkov: checkov over the rendered chart, terraform/ and the Dockerfile, failing on a failed check.

The wiring is read from the script; the run itself plants a privileged pod beside the chart's renderings
and expects exactly that pod to fail (so the chart's own manifests pass and a bad one does not). The run
needs checkov in the script's own virtualenv (``.ci/checkov`` makes it once per machine): without it the
run is skipped, or fails under ``AIAAS_TEST_REQUIRE_TOOLS=1`` (CI runs ``.ci/checkov`` before the tests).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from support import missing_tool

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / ".ci" / "checkov"
TEXT = SCRIPT.read_text() if SCRIPT.exists() else ""


def _pinned() -> str:
    match = re.search(r"^CHECKOV_VERSION=(\S+)$", TEXT, re.MULTILINE)
    assert match, "the script pins checkov's version"
    return match.group(1)


def _venv() -> Path:
    if os.environ.get("AIAAS_CHECKOV_VENV"):
        return Path(os.environ["AIAAS_CHECKOV_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "aiaas" / "checkov-venv"


class TestTheScript:
    def test_it_is_an_executable_strict_bash_script(self) -> None:
        assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
        assert TEXT.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in TEXT
        subprocess.run(["bash", "-n", str(SCRIPT)], check=True)

    def test_it_scans_the_three_frameworks_by_default(self) -> None:
        assert "frameworks=(kubernetes terraform dockerfile)" in TEXT
        assert re.search(r'run kubernetes -d "\$manifests"', TEXT)
        assert re.search(r"run terraform -d terraform\b", TEXT)
        assert re.search(r"run dockerfile -f Dockerfile\b", TEXT)
        assert '--framework "$fw"' in TEXT
        assert "--soft-fail" not in TEXT, "a failed check must fail the script"

    def test_the_chart_is_rendered_as_the_tests_render_it_in_every_mode(self) -> None:
        assert "from helm_support import" in TEXT and "render(values)" in TEXT
        for values in ('ci("lint")', 'ci("single")', 'ci("canary")', '"mode": "single"', '"canary"'):
            assert values in TEXT, values

    def test_checkov_is_pinned_in_a_virtualenv_of_its_own(self) -> None:
        assert re.fullmatch(r"\d+\.\d+\.\d+", _pinned())
        assert '"checkov==$CHECKOV_VERSION"' in TEXT
        assert "${XDG_CACHE_HOME:-$HOME/.cache}/aiaas/checkov-venv" in TEXT
        assert ".venv/bin/pip" not in TEXT and ".venv/bin/python -m pip" not in TEXT

    def test_an_unknown_framework_is_refused_before_anything_runs(self) -> None:
        r = subprocess.run(["bash", str(SCRIPT), "helm"], capture_output=True, text=True, check=False, cwd=ROOT)
        assert r.returncode == 2 and "unknown framework helm" in r.stderr


PLANTED = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "planted", "namespace": "planted"},
    "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]},
}


class TestTheRun:
    def test_a_planted_privileged_pod_fails_it_and_the_chart_does_not(self, tmp_path: Path) -> None:
        checkov = _venv() / "bin" / "checkov"
        version = subprocess.run([str(checkov), "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip() if checkov.exists() else ""
        if version != _pinned():
            missing_tool(f"checkov {_pinned()} in {_venv()} (bash .ci/checkov installs it)")
        (tmp_path / "planted.yaml").write_text(yaml.safe_dump(PLANTED))
        env = {**os.environ, "AIAAS_CHECKOV_EXTRA_MANIFESTS": str(tmp_path)}
        r = subprocess.run(["bash", str(SCRIPT), "kubernetes"], capture_output=True, text=True, check=False,
                           cwd=ROOT, env=env, timeout=600)
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert re.search(r"CKV_K8S_16:.*\n\s+FAILED for resource: Pod\.planted\.planted", out), out
        failed = set(re.findall(r"FAILED for resource: (\S+)", out))
        assert failed == {"Pod.planted.planted"}, f"the chart's manifests failed: {failed - {'Pod.planted.planted'}}"
        assert re.search(r"rendered single: \d+ objects", out) and re.search(r"rendered canary-nginx: \d+ objects", out)
