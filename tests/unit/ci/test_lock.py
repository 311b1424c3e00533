"""The lock files in requirements/ agree with pyproject.toml, and the check that says so catches a mismatch.

Offline: only the files are read. Each lock must pin, with ``==`` and at least one sha256 hash, every
requirement pyproject.toml makes for the extras of that lock (markers evaluated for CPython 3.11 on
x86-64 Linux, the image's and CI's platform), at a version inside pyproject's range; llama-cpp-python
is compiled from source and has a lock of its own (its sdist, at pyproject's pin); and a package in
several locks has one version in all of them, so CI tests what the image ships.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[3]
LOCKS = ROOT / "requirements"
COMPILED = "llama-cpp-python"  # built from its sdist; never in the package locks (see requirements/README.md)

# Each lock and the extras of aiaas it holds (requirements/compile makes them so).
PACKAGE_LOCKS = {"runtime.lock": ("local",), "base.lock": (), "ci.lock": ("test", "local", "docs")}

# CPython 3.11 on x86-64 Linux. python_full_version is Debian bookworm's 3.11 (the image's base), the
# oldest 3.11 either base image has.
TARGET = {
    "implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "python_version": "3.11", "python_full_version": "3.11.2", "implementation_version": "3.11.2",
}

_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    """One requirement of a lock: its name, its exact version, whether it applies to the target."""

    line: int
    name: str
    version: Version | None
    hashes: int
    applies: bool


def read_lock(text: str) -> tuple[list[Pin], list[str]]:
    """The pins of a lock file (pip's requirements format with hashes) and what is wrong with its lines."""
    pins: list[Pin] = []
    problems: list[str] = []
    logical: list[tuple[int, str]] = []
    start, buf = 0, ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            logical.append((start, buf.strip()))
        buf = ""
    for n, entry in logical:
        words = entry.split()
        options = [w for w in words if w.startswith("-")]
        spec = " ".join(w for w in words if not w.startswith("--hash="))
        if any(not _HASH.match(o) for o in options):
            problems.append(f"line {n}: only --hash=sha256:... options may follow a pin: {entry[:80]}")
            continue
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            problems.append(f"line {n}: not a requirement: {exc}")
            continue
        pinned = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if req.url or len(req.specifier) != 1 or not pinned:
            problems.append(f"line {n}: {req.name} is not pinned to one exact version ({spec})")
        if not options:
            problems.append(f"line {n}: {req.name} has no --hash=sha256:")
        pins.append(Pin(line=n, name=canonicalize_name(req.name),
                        version=Version(pinned[0].version) if pinned else None, hashes=len(options),
                        applies=req.marker is None or req.marker.evaluate(TARGET)))
    return pins, problems


def wanted(pyproject: dict, extras: tuple[str, ...]) -> list[Requirement]:
    """What aiaas requires with ``extras`` on the target platform."""
    project = pyproject["project"]
    lines = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    envs = [{**TARGET, "extra": e} for e in extras or ("",)]
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or any(r.marker.evaluate(env) for env in envs)]


def lock_problems(text: str, pyproject: dict, extras: tuple[str, ...]) -> list[str]:
    """Everything that keeps a package lock from being the locked form of aiaas with ``extras``."""
    pins, problems = read_lock(text)
    seen: dict[str, list[Pin]] = {}
    for p in pins:
        seen.setdefault(p.name, []).append(p)
    for name, same in seen.items():
        if len(same) > 1:
            problems.append(f"{name} is pinned {len(same)} times (lines {', '.join(str(p.line) for p in same)})")
    for req in wanted(pyproject, extras):
        name = canonicalize_name(req.name)
        found = [p for p in seen.get(name, []) if p.applies and p.version is not None]
        if name == COMPILED:
            if name in seen:
                problems.append(f"{name} is in the lock: it is compiled from source, install it with --no-deps")
            continue
        if not found:
            problems.append(f"{req} (pyproject.toml) is not in the lock")
        elif not req.specifier.contains(found[0].version, prereleases=True):
            problems.append(f"{name}=={found[0].version} (line {found[0].line}) is outside pyproject's {req}")
    return problems


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock(name: str) -> str:
    return (LOCKS / name).read_text()


class TestTheLocks:
    @pytest.mark.parametrize("name", sorted(PACKAGE_LOCKS))
    def test_each_lock_pins_what_pyproject_requires_with_hashes(self, name: str) -> None:
        assert lock_problems(_lock(name), _pyproject(), PACKAGE_LOCKS[name]) == []

    @pytest.mark.parametrize("name", sorted(PACKAGE_LOCKS))
    def test_each_lock_is_more_than_pyproject(self, name: str) -> None:
        # The transitive requirements are there too, each with a hash for every file of its version.
        pins, _ = read_lock(_lock(name))
        assert len(pins) > len(wanted(_pyproject(), PACKAGE_LOCKS[name]))
        assert {"typing-extensions", "anyio", "idna"} <= {p.name for p in pins}
        assert all(p.hashes >= 1 for p in pins)

    def test_a_package_has_one_version_in_every_lock(self) -> None:
        versions: dict[str, dict[str, Version | None]] = {}
        for name in [*PACKAGE_LOCKS, "build.lock"]:
            for p in read_lock(_lock(name))[0]:
                versions.setdefault(p.name, {})[name] = p.version
        differ = {pkg: v for pkg, v in versions.items() if len(set(v.values())) > 1}
        assert differ == {}
        # The image's packages are all in CI's lock: CI tests exactly what the image ships.
        runtime = {p.name for p in read_lock(_lock("runtime.lock"))[0]}
        ci = {p.name for p in read_lock(_lock("ci.lock"))[0]}
        assert runtime - ci == set()

    def test_the_compiled_package_has_its_own_lock_at_pyprojects_pin(self) -> None:
        pins, problems = read_lock(_lock("llama-cpp-python.lock"))
        assert problems == []
        assert [p.name for p in pins] == [COMPILED]
        (pin,) = [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"]["local"]
                  if canonicalize_name(Requirement(r).name) == COMPILED]
        assert str(pin.specifier) == f"=={pins[0].version}"

    def test_the_build_tools_lock_holds_pips_and_the_backends(self) -> None:
        pins, problems = read_lock(_lock("build.lock"))
        assert problems == []
        backend = _pyproject()["build-system"]["requires"]
        names = {p.name for p in pins}
        assert {"pip", "scikit-build-core"} | {canonicalize_name(Requirement(r).name) for r in backend} <= names
        for req in map(Requirement, backend):
            (p,) = [p for p in pins if p.name == canonicalize_name(req.name)]
            assert req.specifier.contains(p.version, prereleases=True), (req, p)


class TestTheCheck:
    """Planted mismatches in a copy of a real lock: each one is reported."""

    def _planted(self, tmp_path: Path, old: str, new: str) -> list[str]:
        text = _lock("runtime.lock")
        assert old in text
        planted = tmp_path / "runtime.lock"
        planted.write_text(text.replace(old, new, 1))
        return lock_problems(planted.read_text(), _pyproject(), PACKAGE_LOCKS["runtime.lock"])

    def _litestar(self) -> str:
        (line,) = [ln for ln in _lock("runtime.lock").splitlines() if ln.startswith("litestar==")]
        return line.split()[0]

    def test_a_pin_outside_pyprojects_range_fails(self, tmp_path: Path) -> None:
        problems = self._planted(tmp_path, self._litestar() + " ", "litestar==3.0.0 ")
        assert len(problems) == 1 and "litestar==3.0.0" in problems[0] and "outside" in problems[0], problems

    def test_a_missing_requirement_fails(self, tmp_path: Path) -> None:
        problems = self._planted(tmp_path, "\nasyncpg==", "\nnot-asyncpg==")
        assert any(p.startswith("asyncpg>=0.30 ") and "not in the lock" in p for p in problems), problems

    def test_an_unpinned_line_fails(self, tmp_path: Path) -> None:
        problems = self._planted(tmp_path, self._litestar() + " ", "litestar>=2.25 ")
        assert any("litestar is not pinned" in p for p in problems), problems

    def test_a_line_without_a_hash_fails(self, tmp_path: Path) -> None:
        problems = self._planted(tmp_path, "\n", "\nsix==1.17.0\n")
        assert any("six has no --hash" in p for p in problems), problems

    def test_an_option_other_than_a_hash_fails(self, tmp_path: Path) -> None:
        problems = self._planted(tmp_path, "\n", "\n--index-url https://example.invalid/simple\n")
        assert any("only --hash" in p for p in problems), problems

    def test_the_compiled_package_in_the_lock_fails(self, tmp_path: Path) -> None:
        llama = _lock("llama-cpp-python.lock").split("\n", 2)[2]
        problems = self._planted(tmp_path, "\n", "\n" + llama)
        assert any("llama-cpp-python is in the lock" in p for p in problems), problems

    def test_a_requirement_whose_marker_excludes_linux_fails(self, tmp_path: Path) -> None:
        problems = self._planted(tmp_path, self._litestar() + " ", self._litestar() + " ; sys_platform == 'win32' ")
        assert any(p.startswith("litestar<3,>=2.25 ") and "not in the lock" in p for p in problems), problems

    def test_a_pyproject_change_without_a_new_lock_fails(self) -> None:
        pyproject = _pyproject()
        deps = pyproject["project"]["dependencies"]
        deps[:] = ["litestar>=99" if d.startswith("litestar") else d for d in deps] + ["left-pad>=1"]
        problems = lock_problems(_lock("runtime.lock"), pyproject, PACKAGE_LOCKS["runtime.lock"])
        assert any("outside pyproject's litestar>=99" in p for p in problems), problems
        assert "left-pad>=1 (pyproject.toml) is not in the lock" in problems
