"""Narrow a CycloneDX SBOM of the CI environment to what the image installs: aiaas[local] and everything
it requires, transitively (read from the installed distributions' own metadata). Test and docs tools
are left out, so the SBOM lists what runs in production.

    python .ci/sbom_runtime.py ENVIRONMENT.cdx.json RUNTIME.cdx.json
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata

from packaging.requirements import Requirement


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(root: str = "aiaas", extras: tuple[str, ...] = ("local",)) -> set[str]:
    """Normalized names of ``root`` and every distribution its requirements (with ``extras``) pull in."""
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        if _norm(name) in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(_norm(name))
        for line in dist.requires or []:
            req = Requirement(line)
            env = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in env):
                todo.append((req.name, tuple(req.extras)))
    return seen


def narrow(bom: dict, keep: set[str]) -> dict:
    """``bom`` with only the components (and dependency entries) whose names are in ``keep``."""
    components = [c for c in bom.get("components", []) if _norm(c["name"]) in keep]
    refs = {c["bom-ref"] for c in components} | {bom["metadata"]["component"]["bom-ref"]}
    deps = [{"ref": d["ref"], "dependsOn": [r for r in d.get("dependsOn", []) if r in refs]}
            for d in bom.get("dependencies", []) if d["ref"] in refs]
    return {**bom, "components": components, "dependencies": deps}


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        bom = json.load(f)
    out = narrow(bom, runtime_closure())
    with open(target, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    report = f"sbom: {len(out['components'])} runtime components of {len(bom.get('components', []))} in the CI"
    print(f"{report} environment -> {target}")  # noqa: T201 - a CI script's report


if __name__ == "__main__":
    main()
