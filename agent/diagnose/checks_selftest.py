"""`inference.selftest` (opt-in, `agent diagnose --selftest`): `agent selftest` on the installed bundle
with the configured backend and precision; FAIL names the stage that failed and its fix."""

from __future__ import annotations

from agent.diagnose.model import Context, Result, failed, passed


def selftest(ctx: Context) -> Result:
    from agent.inference.selftest import installed_bundle, run_selftest

    name = "inference.selftest"
    inf = ctx.cfg.inference
    path = installed_bundle(inf, ctx.cfg.daemon.state_dir)
    rep = run_selftest(
        path,
        inf.public_key,
        backend=inf.backend,
        precision=inf.precision,
        threads=inf.threads,
        golden_scale=inf.golden_tolerance,
    )
    if not rep.ok:
        bad = next(s for s in rep.stages if not s.ok)
        return failed(
            name, f"{bad.name}: {bad.detail}", bad.fix or "see `agent selftest --json`", path=str(path)
        )
    text = "; ".join(
        f"{n} {m.variant} golden {max(m.golden_error_over_tolerance.values()):.2f}x tol, "
        f"batch {m.batch} p50 {m.latency_ms_p50:.1f} ms"
        for n, m in sorted(rep.models.items())
    )
    return passed(name, f"{inf.backend}: {text}", path=str(path))
