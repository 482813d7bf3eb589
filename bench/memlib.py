"""Memory and load readings shared by the benchmarks: RSS and PSS of a process from
/proc/PID/smaps_rollup (PSS counts shared pages by share: what this process really costs the
gateway), and the machine's load average next to every figure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def rss_pss_mib(pid: int | str = "self") -> dict[str, float]:
    """{"rss_mib", "pss_mib"} of a process (Linux 4.14+: smaps_rollup)."""
    out = {"rss_mib": float("nan"), "pss_mib": float("nan")}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[f"{key.lower()}_mib"] = round(int(rest.split()[0]) / 1024, 2)
    except (OSError, ValueError, IndexError):
        pass
    return out


def load() -> dict[str, Any]:
    """Load average and CPUs, with ``busy`` set when the 1-minute load exceeds half the CPUs: figures
    taken then are lower bounds (other processes shared the CPU)."""
    la = os.getloadavg()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"loadavg": [round(x, 2) for x in la], "cpus": cpus, "busy": la[0] > 0.5 * cpus}
