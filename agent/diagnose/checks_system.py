"""The gateway itself: disk space of the state directory, clock synchronisation, temperature, Jetson
power mode. Tools that are absent are reported with the reason, never guessed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from agent.diagnose.model import Context, Result, failed, passed, warned

DISK_FAIL_MB = 200.0
DISK_WARN_MB = 1024.0
TEMP_WARN_C = 80.0
TEMP_FAIL_C = 95.0
THERMAL_ROOT = Path("/sys/class/thermal")
JETSON_MARKERS = (Path("/etc/nv_tegra_release"), Path("/proc/device-tree/nvidia,dtsname"))
TOOL_TIMEOUT_S = 3.0


def _existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def disk(ctx: Context) -> Result:
    name = "system.disk"
    where = _existing(ctx.cfg.daemon.state_dir)
    usage = shutil.disk_usage(where)
    free_mb = usage.free / 2**20
    text = f"{free_mb:.0f} MiB free of {usage.total / 2**20:.0f} MiB at {where}"
    if free_mb < DISK_FAIL_MB:
        return failed(name, text, "free space: lower store.retention_days, delete old captures and logs")
    if free_mb < DISK_WARN_MB:
        return warned(name, text, "space is getting low: lower store.retention_days or set store.max_size_mb")
    return passed(name, text)


def _run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    return proc.returncode, (proc.stdout.strip() or proc.stderr.strip())


def clock(ctx: Context) -> Result:
    name = "system.clock"
    fix = "enable time sync: `timedatectl set-ntp true` or install chrony; check network access to NTP"
    gnss = (ctx.daemon_status or {}).get("clock") or {}
    if gnss.get("system_clock_wrong"):  # the running daemon compared it with GNSS time
        return failed(
            name,
            f"system clock {-float(gnss.get('offset_s') or 0.0):+.0f} s off GNSS time (the agent runs on "
            "GNSS-corrected time meanwhile; agent/sensors/clock.py)",
            fix,
        )
    if shutil.which("chronyc"):
        rc, out = _run(["chronyc", "-n", "tracking"])
        if rc == 0:
            status = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Leap status" in ln), "")
            if status == "Normal":
                return passed(name, "synchronised (chronyc: leap status Normal)")
            return failed(name, f"not synchronised (chronyc: leap status {status or 'unknown'})", fix)
    if shutil.which("timedatectl"):
        rc, out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        if rc == 0 and out in ("yes", "no"):
            if out == "yes":
                return passed(name, "synchronised (timedatectl NTPSynchronized=yes)")
            return failed(name, "not synchronised (timedatectl NTPSynchronized=no)", fix)
        return warned(name, f"cannot tell: timedatectl failed ({out.splitlines()[0] if out else rc})", fix)
    return warned(name, "cannot tell: neither chronyc nor timedatectl is installed", fix)


def temperature(ctx: Context) -> Result:
    name = "system.temperature"
    zones = sorted(THERMAL_ROOT.glob("thermal_zone*")) if THERMAL_ROOT.is_dir() else []
    temps: dict[str, float] = {}
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip()
            temps[kind or zone.name] = int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    if not temps:
        return passed(name, f"not available here: no readable zones under {THERMAL_ROOT}")
    hot = max(temps, key=lambda k: temps[k])
    text = f"hottest {hot} {temps[hot]:.1f} degC ({len(temps)} zones)"
    if temps[hot] >= TEMP_FAIL_C:
        return failed(name, text, "overheating: shade the enclosure, check the fan, lower the power mode")
    if temps[hot] >= TEMP_WARN_C:
        return warned(name, text, "running hot: check ventilation and the enclosure's sun shield")
    return passed(name, text, zones=temps)


def power_mode(ctx: Context) -> Result:
    name = "system.power_mode"
    if not any(p.exists() for p in JETSON_MARKERS):
        return passed(name, "not a Jetson (no /etc/nv_tegra_release): no power mode to check")
    if not shutil.which("nvpmodel"):
        return warned(name, "Jetson without nvpmodel", "install nvidia-l4t-tools (nvpmodel)")
    rc, out = _run(["nvpmodel", "-q"])
    if rc != 0:
        return warned(name, f"nvpmodel -q failed: {out}", "run diagnose as a user allowed to query nvpmodel")
    mode = " ".join(out.split())
    return passed(name, f"nvpmodel: {mode}")
