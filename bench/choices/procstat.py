"""CPU accounting for a process tree via /proc (utime+stime of pid + descendants, all threads)."""
import os

_TCK = os.sysconf("SC_CLK_TCK")


def _children_map():
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s.rsplit(")", 1)[1].split()[1])
        m.setdefault(ppid, []).append(int(d))
    return m


def tree(pid):
    m = _children_map()
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(m.get(p, []))
    return out


def cpu_seconds(pids):
    tot = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return tot / _TCK
