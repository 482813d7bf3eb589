"""The model bundle and the inference runtime: signature + hashes, golden parity, TensorRT engine vs this
device, backend in use and warm-up latency.

The bundle checked is the one the daemon uses: the active A/B slot under the inference state directory
when there is one, else ``inference.bundle_dir``. With the daemon running, backend and warm-up come from
its status; stopped, diagnose loads the bundle itself (:class:`agent.inference.manager.ModelManager`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from agent.diagnose.model import Context, Result, Status, failed, not_measured, passed, warned
from agent.errors import LewsError

WARMUP_WARN_MS = 1000.0  # one inference slower than this at warm-up
# sha256 of the raw bytes of the committed demo key (bundles/demo-keys/signing.pub), whose private
# half is in the repository: trusting it means trusting anyone. Also recognised where the file is gone.
DEMO_KEY_SHA256 = "2e7f9021322629b0d6d258b69ddb3c0f7e9e5ca1e5a41cd125c06812cd5fa67b"


def trust(ctx: Context) -> Result:
    """FAIL: no key, or a production config (CAP status Actual) trusting the demo key; PASS, saying so,
    for a demo / drill / test config (CAP status Test, Exercise ...). Compared by key bytes, wherever
    the file lies."""
    from agent.inference.settings import DEMO_PUBLIC_KEY
    from agent.inference.verify import load_public_key, public_key_sha256

    name = "bundle.trust"
    path = ctx.cfg.inference.public_key
    try:
        fingerprint = public_key_sha256(load_public_key(path))
    except LewsError as exc:
        return failed(name, exc.message, exc.fix or "set inference.public_key")
    demo = {DEMO_KEY_SHA256}
    with contextlib.suppress(LewsError):  # an install without the demo keys: the constant still knows it
        demo.add(public_key_sha256(load_public_key(DEMO_PUBLIC_KEY)))
    if fingerprint in demo:
        status = ctx.cfg.mqtt.cap.status
        text = f"{path} is the DEMO signing key (its private half is public: anyone can sign bundles)"
        fix = "sign bundles with your own key (`agent-export keygen`) and set inference.public_key to it"
        if status == "Actual":
            return failed(name, f"{text}; this config publishes real alerts (CAP status Actual)", fix)
        return passed(name, f"{text}; acceptable only because this config is CAP status {status}")
    return passed(name, f"bundles must be signed by key sha256 {fingerprint[:16]}...", path=str(path))


def active_bundle(ctx: Context) -> Path:
    from agent.inference.selftest import installed_bundle

    return installed_bundle(ctx.cfg.inference, ctx.cfg.daemon.state_dir)


def _integrity(ctx: Context) -> Result:
    from agent.inference.verify import verify_bundle

    path = active_bundle(ctx)
    name = "bundle.integrity"
    try:
        rep = verify_bundle(path, ctx.cfg.inference.public_key, golden=False)
    except LewsError as exc:
        return failed(name, f"{path}: {exc.message}", exc.fix or "copy the signed bundle again")
    return passed(
        name, f"bundle {rep.bundle_id} signed and intact ({len(rep.models)} models)", path=str(path)
    )


def integrity(ctx: Context) -> Result:
    return ctx.memo("bundle.integrity", lambda: _integrity(ctx))


def golden(ctx: Context) -> Result:
    from agent.inference.verify import verify_bundle

    name = "bundle.golden"
    if integrity(ctx).status == Status.FAIL:
        return not_measured(name, "bundle.integrity")
    path = active_bundle(ctx)
    try:
        rep = verify_bundle(
            path, ctx.cfg.inference.public_key, golden=True, golden_scale=ctx.cfg.inference.golden_tolerance
        )
    except LewsError as exc:
        return failed(name, exc.message, exc.fix or "rebuild the bundle")
    worst = max((max(r.values()) for r in rep.golden.values() if r), default=0.0)
    return passed(name, f"{len(rep.golden)} variants reproduce (worst {worst:.3f} x tolerance)")


def _load(ctx: Context) -> dict[str, Any]:
    """The runtime's status as the daemon has it, or from loading the bundle here (daemon stopped)."""
    if ctx.daemon_status is not None:
        return dict(ctx.daemon_status.get("inference", {}))
    from agent.inference.manager import ModelManager

    settings = ctx.cfg.inference.model_copy(update={"state_dir": None, "bundle_dir": active_bundle(ctx)})
    manager = ModelManager(settings)
    try:
        return manager.start()
    finally:
        manager.close()


def runtime(ctx: Context) -> dict[str, Any]:
    return ctx.memo("inference", lambda: _load(ctx))


def backend(ctx: Context) -> Result:
    name = "inference.backend"
    if integrity(ctx).status == Status.FAIL:
        return not_measured(name, "bundle.integrity")
    st = runtime(ctx)
    mode, want = st.get("mode"), ctx.cfg.inference.backend
    reasons = "; ".join(st.get("fallback_reasons", []))
    text = f"{mode} {st.get('precision') or ''} (configured {want} {ctx.cfg.inference.precision})".strip()
    if mode in (None, "rules_only"):
        return failed(name, f"rules-only: {reasons}", "fix the bundle/runtime named in the reason", mode=mode)
    if mode != want or st.get("precision") != ctx.cfg.inference.precision:
        return warned(name, f"{text}: fell back ({reasons})", "see the reason; rebuild the engine or bundle")
    return passed(name, text, bundle_id=st.get("bundle_id"))


def warmup(ctx: Context) -> Result:
    name = "inference.warmup"
    if integrity(ctx).status == Status.FAIL:
        return not_measured(name, "bundle.integrity")
    ms = runtime(ctx).get("warmup_ms", {})
    if not ms:
        return warned(name, "no warm-up measured (no model loaded)", "see inference.backend")
    text = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(ms.items()))
    if max(ms.values()) > WARMUP_WARN_MS:
        return warned(name, text, "slow inference: check the power mode and the backend")
    return passed(name, text)


def engine(ctx: Context) -> Result:
    name = "bundle.engine"
    if ctx.cfg.inference.backend != "tensorrt":
        return passed(name, "not configured (inference.backend = onnxruntime)")
    from agent.inference.engine_meta import check_sidecar, current_device, read_sidecar
    from agent.inference.manifest import ENGINE_DIR, read_manifest

    path = active_bundle(ctx)
    engines = sorted((path / ENGINE_DIR).glob("*.engine")) if (path / ENGINE_DIR).is_dir() else []
    if not engines:
        return failed(name, f"no TensorRT engine in {path / ENGINE_DIR}", f"agent-export engine {path}")
    try:
        device = current_device()
        files = read_manifest(path)["files"]
        for eng in engines:
            side = read_sidecar(eng)
            onnx = files.get(side.onnx_file, {}).get("sha256", "")
            check_sidecar(side, engine=eng, device=device, onnx_sha256=onnx)
    except LewsError as exc:
        return failed(name, exc.message, exc.fix or f"agent-export engine {path}")
    return passed(name, f"{len(engines)} engines match {device.gpu_name}, TensorRT {device.tensorrt_version}")
