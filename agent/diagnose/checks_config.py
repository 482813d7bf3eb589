"""The configuration (it loaded, so it is valid: say what it contains) and whether the daemon runs."""

from __future__ import annotations

from agent.diagnose.model import (
    Context,
    Result,
    failed,
    fmt_age,
    fresh_limit_s,
    passed,
    read_status_file,
    status_path,
)


def config(ctx: Context) -> Result:
    cfg = ctx.cfg
    ports = ", ".join(f"{p.name}({p.kind})" for p in cfg.sensors.enabled_ports()) or "none"
    where = str(ctx.config_path) if ctx.config_path else "configuration"
    return passed("config", f"{where} valid: site {cfg.site.site}/{cfg.site.node}, ports {ports}")


def rain_thresholds(ctx: Context) -> Result:
    """Say plainly whether the site's rain thresholds are calibrated and what the default costs.

    PASS either way (an uncalibrated site still runs, on the published default curve); the value says it."""
    from agent.warning.rain_notice import rain_calibration

    notice = rain_calibration(ctx.cfg.warning, ctx.cfg.site.site)
    return passed("warning.rain_thresholds", notice["message"], calibrated=notice["calibrated"])


def daemon(ctx: Context) -> Result:
    name = "daemon"
    if ctx.daemon_running:
        st = ctx.daemon_status or {}
        loops = st.get("loops", {})
        bad = {k: v for k, v in loops.items() if v.get("failures")}
        text = f"running (status {fmt_age(ctx.status_age_s)} old), version {st.get('version')}"
        if bad:
            return failed(
                name, f"{text}; failing loops {bad}", "read the daemon's log: journalctl -u lews-agent"
            )
        return passed(name, text)
    path = status_path(ctx.cfg)
    last, _ = read_status_file(ctx.cfg)
    if last is not None and last.get("fatal"):
        return failed(
            name,
            f"stopped on a fatal error: {last['fatal']}",
            "read the daemon's log (journalctl -u lews-agent), fix the cause, restart it",
        )
    why = (
        f"not running: {path} is {fmt_age(ctx.status_age_s)} old (fresh < {fresh_limit_s(ctx.cfg):g} s)"
        if ctx.status_age_s is not None
        else f"not running: no {path}"
    )
    if ctx.options.expect_daemon:
        return failed(name, why, "systemctl start lews-agent; then journalctl -u lews-agent")
    return passed(name, f"{why}; ports probed directly")
