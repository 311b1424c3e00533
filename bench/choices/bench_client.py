"""Interleaved aiohttp vs httpx upstream-client benchmark. Usage: python bench_client.py [rounds]"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = 18100
LIBS = ["aiohttp", "httpx"]


def main(rounds):
    up = subprocess.Popen([sys.executable, "upstream.py", str(PORT)], cwd=HERE, stdout=subprocess.PIPE)
    try:
        assert up.stdout.readline().strip() == b"ready"
        res = {l: [] for l in LIBS}
        for r in range(rounds):
            for lib in (LIBS if r % 2 == 0 else LIBS[::-1]):
                p = subprocess.run([sys.executable, "client_worker.py", lib, str(PORT)], cwd=HERE,
                                   capture_output=True, text=True, timeout=300)
                if p.returncode:
                    print(p.stderr)
                    raise SystemExit(1)
                d = json.loads(p.stdout.strip().splitlines()[-1])
                res[lib].append(d)
                print(f"round {r} {lib:8s} " + " ".join(f"{k}={v:.0f}" for k, v in d.items() if isinstance(v, float)), flush=True)
        with open(os.path.join(HERE, "results_client.json"), "w") as f:
            json.dump(res, f, indent=1)
        print("\nSUMMARY (median of rounds; ratio = httpx/aiohttp per-round median)")
        a, h = res["aiohttp"], res["httpx"]
        keys = [k for k in a[0] if k != "lib"]
        for k in keys:
            hk = k.replace("_any_", "_raw_")
            am = statistics.median(x[k] for x in a)
            hm = statistics.median(x[hk] for x in h)
            ratio = statistics.median(hh[hk] / aa[k] for aa, hh in zip(a, h))
            print(f"{k:24s}/{hk:24s} aiohttp={am:9.1f} httpx={hm:9.1f} h/a={ratio:5.2f}")
    finally:
        up.terminate()
        up.wait(10)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
