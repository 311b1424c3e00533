"""Fail when detect-secrets finds a secret in any file Git tracks (or would track).

Test fixtures use throwaway values and are marked inline with ``pragma: allowlist secret``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

files = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
    check=True, capture_output=True, text=True,
).stdout.split()
files = [f for f in files if Path(f).is_file() and not f.endswith((".lock", ".svg", ".png"))]
detect = Path(sys.executable).with_name("detect-secrets")
out = subprocess.run([str(detect), "scan", "--disable-plugin", "KeywordDetector", *files],
                     check=True, capture_output=True, text=True).stdout
results = json.loads(out)["results"]
if results:
    for path, found in results.items():
        for item in found:
            print(f"secret? {path}:{item['line_number']}: {item['type']}")
    sys.exit(1)
print(f"secrets scan: {len(files)} files clean")
