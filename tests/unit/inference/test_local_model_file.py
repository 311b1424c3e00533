"""The embedded model's file, assembled from the package's chunks: complete for every process that asks,
however many ask at once, and never left half-written.

On a fresh machine two streamers (or two test workers) start together; the package's own ``assemble()``
wrote the target in place, so the second found a partial file and loaded it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiaas.inference.providers.base import UpstreamFailure
from aiaas.inference.providers.local import assemble_model


def _chunks(tmp_path: Path, n: int = 4, size: int = 3 << 20) -> tuple[list[Path], bytes]:
    parts, whole = [], b""
    for i in range(n):
        data = os.urandom(size)
        part = tmp_path / f"part{i:02d}"
        part.write_bytes(data)
        parts.append(part)
        whole += data
    return parts, whole


# What one process that needs the model does: assemble it (or find it), then read what it would load.
CHILD = """
import hashlib, sys
from pathlib import Path
from aiaas.inference.providers.local import assemble_model
*chunks, target, sha = sys.argv[1:]
path = assemble_model([Path(c) for c in chunks], Path(target), sha)
print(hashlib.sha256(path.read_bytes()).hexdigest())
"""


class TestAssembly:
    def test_the_file_is_the_chunks_in_order(self, tmp_path: Path) -> None:
        chunks, whole = _chunks(tmp_path)
        target = tmp_path / "cache" / "model.gguf"
        assert assemble_model(chunks, target, hashlib.sha256(whole).hexdigest()) == target
        assert target.read_bytes() == whole
        assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf", "model.gguf.lock"]

    def test_many_processes_at_once_each_get_the_whole_file(self, tmp_path: Path) -> None:
        chunks, whole = _chunks(tmp_path)
        sha = hashlib.sha256(whole).hexdigest()
        target = tmp_path / "cache" / "model.gguf"
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, *map(str, chunks), str(target), sha],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        seen = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            seen.append(out.strip())
        assert seen == [sha] * 6
        assert not list(target.parent.glob("*.partial"))

    def test_a_file_of_the_wrong_size_is_rebuilt(self, tmp_path: Path) -> None:
        chunks, whole = _chunks(tmp_path)
        target = tmp_path / "model.gguf"
        target.write_bytes(whole[: len(whole) // 2])  # an assembly that crashed half-way
        assemble_model(chunks, target, hashlib.sha256(whole).hexdigest())
        assert target.read_bytes() == whole

    def test_a_complete_file_is_not_rewritten(self, tmp_path: Path) -> None:
        chunks, whole = _chunks(tmp_path)
        target = tmp_path / "model.gguf"
        assemble_model(chunks, target, hashlib.sha256(whole).hexdigest())
        before = target.stat().st_ino, target.stat().st_mtime_ns
        assemble_model(chunks, target, hashlib.sha256(whole).hexdigest())
        assert (target.stat().st_ino, target.stat().st_mtime_ns) == before

    def test_chunks_that_do_not_match_the_digest_leave_nothing_behind(self, tmp_path: Path) -> None:
        chunks, _ = _chunks(tmp_path)
        target = tmp_path / "cache" / "model.gguf"
        with pytest.raises(UpstreamFailure, match="SHA-256 mismatch"):
            assemble_model(chunks, target, "0" * 64)
        assert not target.exists()
        assert not list(target.parent.glob("*.partial"))
