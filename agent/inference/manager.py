"""The model manager: verified loading with fallback, warm-up, status, and A/B updates with rollback.

Fallback chain at load: TensorRT (when configured) -> onnxruntime -> rules-only. A bundle that fails
verification (signature, hashes, schema, golden vectors in onnxruntime) is never used by any backend.
Every step that falls back records its reason in `status()["fallback_reasons"]` and logs it.
`run()` never raises for backend trouble: it returns None and counts why (rules-only, bad input,
runtime error), so the warning engine can treat the forecast as "no data" and keep its rules running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import InferenceInputError, LewsError, ModelUpdateError
from agent.inference.ab import ABStore
from agent.inference.archive import opened_bundle
from agent.inference.backend import Backend
from agent.inference.manifest import ModelEntry, model_entries, read_manifest
from agent.inference.ort_backend import OrtBackend
from agent.inference.settings import InferenceSettings
from agent.inference.verify import check_golden, load_golden, load_public_key, verify_bundle

log = logging.getLogger(__name__)

RULES_ONLY = "rules_only"


class Loaded:
    """A verified bundle with a running backend."""

    def __init__(
        self, bundle_dir: Path, manifest: dict[str, Any], backend: Backend, warmup_ms: dict[str, float]
    ):
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.backend = backend
        self.warmup_ms = warmup_ms

    @property
    def bundle_id(self) -> str:
        return str(self.manifest["bundle_id"])


class ModelManager:
    def __init__(self, settings: InferenceSettings, *, health_check: Callable[[Loaded], None] | None = None):
        self.settings = settings
        self._key: Ed25519PublicKey | None = None
        self._health_check = health_check
        self._lock = threading.RLock()
        self._loaded: Loaded | None = None
        self._reasons: list[str] = []
        self.counters: Counter[str] = Counter()
        self._ab = ABStore(settings.state_dir) if settings.state_dir is not None else None
        self._staged: tuple[str, Path] | None = None
        self._update: dict[str, Any] = {"state": "none"}
        self._probation_left = 0
        self._last_error = ""

    # ------------------------------------------------------------------ loading
    def _public_key(self) -> Ed25519PublicKey:
        if self._key is None:
            self._key = load_public_key(self.settings.public_key)
        return self._key

    def _warm_up(self, bundle_dir: Path, backend: Backend, manifest: dict[str, Any]) -> dict[str, float]:
        """Golden parity on the chosen backend (it may differ from the CPU check) doubles as warm-up."""
        timings = {}
        for entry in model_entries(manifest):
            variant = next(v for v in entry.variants if v.id == backend.variant_id(entry.name))
            check_golden(backend, bundle_dir, entry, variant, scale=self.settings.golden_tolerance)
            one = {k: v[:1] for k, v in load_golden(bundle_dir, entry).inputs.items()}
            t0 = time.perf_counter()
            backend.run(entry.name, one)
            timings[entry.name] = round(1000.0 * (time.perf_counter() - t0), 3)
        return timings

    def _try_backend(self, bundle_dir: Path, manifest: dict[str, Any], kind: str, precision: str) -> Loaded:
        entries = model_entries(manifest)
        backend: Backend
        if kind == "tensorrt":
            from agent.inference.trt_backend import TrtBackend

            backend = TrtBackend(bundle_dir, entries, manifest["files"], precision=precision)
        else:
            backend = OrtBackend(
                bundle_dir,
                entries,
                precision=precision,
                threads=self.settings.threads,
                use_cuda=self.settings.use_cuda,
            )
        try:
            warm = self._warm_up(bundle_dir, backend, manifest)
        except BaseException:
            backend.close()
            raise
        return Loaded(bundle_dir, manifest, backend, warm)

    def _chain(self) -> list[tuple[str, str]]:
        """(runtime, precision) in order of preference: configured, then onnxruntime, then FP32."""
        chain: list[tuple[str, str]] = [(self.settings.backend, self.settings.precision)]
        if self.settings.backend != "onnxruntime":
            chain.append(("onnxruntime", self.settings.precision))
        if self.settings.precision != "fp32":
            chain.append(("onnxruntime", "fp32"))
        return chain

    def load(self, bundle_dir: Path) -> tuple[Loaded | None, list[str]]:
        """Verify `bundle_dir` and start the best backend that passes; (None, reasons) means rules-only.

        Integrity (schema, signature, sha256, ONNX vs manifest) is all-or-nothing. Golden vectors are
        checked per backend and precision: if, say, the INT8 graph does not reproduce on this CPU, the
        FP32 graph of the same signed bundle is used and the reason is reported.
        """
        reasons: list[str] = []
        try:
            verify_bundle(bundle_dir, self._public_key(), threads=self.settings.threads, golden=False)
            manifest = read_manifest(bundle_dir)
        except LewsError as exc:
            reasons.append(f"bundle {bundle_dir} rejected: {exc}")
            log.error("%s", reasons[-1])
            return None, reasons
        for kind, precision in self._chain():
            try:
                loaded = self._try_backend(Path(bundle_dir), manifest, kind, precision)
            except Exception as exc:  # LewsError, or a runtime's own error type: fall back either way
                reasons.append(f"{kind} {precision} unavailable: {type(exc).__name__}: {exc}")
                log.warning("inference: %s; falling back", reasons[-1])
                continue
            log.info(
                "inference: bundle %s on %s %s (warm-up ms %s)",
                loaded.bundle_id,
                kind,
                precision,
                loaded.warmup_ms,
            )
            return loaded, reasons
        return None, reasons

    def start(self) -> dict[str, Any]:
        """Load the active slot (or inference.bundle_dir); on failure the previous slot; else rules-only."""
        with self._lock:
            self._reasons = []
            direct: list[tuple[Path, str | None]] = [(Path(self.settings.bundle_dir), None)]
            try:
                candidates = self._slot_candidates() if self._ab is not None else direct
            except LewsError as exc:  # e.g. a torn active.json: never let it stop the agent
                self._reasons.append(f"model slots unreadable ({exc}); using {self.settings.bundle_dir}")
                log.error("inference: %s", self._reasons[-1])
                candidates = direct
            for path, slot in candidates:
                loaded, reasons = self.load(path)
                self._reasons.extend(reasons)
                if loaded is not None:
                    if self._ab is not None and slot is not None and slot != self._ab.active():
                        self._ab.activate(
                            slot, reason="rollback at start: the active bundle failed verification"
                        )
                        self._update = {"state": "rolled_back", "reason": "; ".join(reasons)}
                    self._loaded = loaded
                    break
            if self._loaded is None:
                log.error("inference: RULES-ONLY mode: %s", "; ".join(self._reasons))
            return self.status()

    def _slot_candidates(self) -> list[tuple[Path, str | None]]:
        """The active slot, then the previous one (installing inference.bundle_dir at first start)."""
        ab = self._ab
        if ab is None:
            return []
        if ab.active() is None:
            try:
                first, _ = ab.stage(self.settings.bundle_dir)
                ab.activate(first, reason=f"first start from {self.settings.bundle_dir}")
            except LewsError as exc:
                self._reasons.append(f"cannot install {self.settings.bundle_dir}: {exc}")
        out: list[tuple[Path, str | None]] = []
        for slot in (ab.active(), ab.previous()):
            if slot is not None:
                out.append((ab.slot_dir(slot), slot))
        return out

    # ------------------------------------------------------------------ running
    @property
    def mode(self) -> str:
        return self._loaded.backend.name if self._loaded is not None else RULES_ONLY

    def model_entry(self, model: str) -> ModelEntry | None:
        """The manifest entry of `model` in the live bundle (inputs, feature order, meta), or None."""
        loaded = self._loaded
        if loaded is None:
            return None
        return next((e for e in model_entries(loaded.manifest) if e.name == model), None)

    def run(self, model: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Outputs, or None (counted) in rules-only mode, for bad inputs, or after a runtime failure."""
        with self._lock:
            if self._loaded is None:
                self.counters["skipped_rules_only"] += 1
                return None
            try:
                out = self._loaded.backend.run(model, inputs)
            except InferenceInputError as exc:
                self.counters["dropped_bad_input"] += 1
                self._last_error = str(exc)
                log.warning("inference input dropped: %s", exc)
                return None
            except Exception as exc:  # LewsError, onnxruntime / TensorRT / CUDA errors alike
                self._runtime_failure(f"{type(exc).__name__}: {exc}")
                return None
            bad = sorted(k for k, v in out.items() if not np.isfinite(v).all())
            if bad:
                self._runtime_failure(f"model {model!r} produced non-finite outputs {bad}")
                return None
            self.counters["runs_ok"] += 1
            if self._probation_left > 0:
                self._probation_left -= 1
                if self._probation_left == 0:
                    self._update = {**self._update, "state": "committed"}
                    log.info("model update %s committed after probation", self._loaded.bundle_id)
            return out

    def _runtime_failure(self, reason: str) -> None:
        self.counters["runtime_errors"] += 1
        self._last_error = reason
        log.error("inference failed: %s", reason)
        if self._probation_left > 0:
            self._rollback(f"health check failed during probation: {reason}")

    # ------------------------------------------------------------------ updates (A/B)
    def stage_update(self, src: Path) -> dict[str, Any]:
        """Install bundle `src` (directory or .tar) into the inactive slot and verify it there;
        the switch waits for try_switch()."""
        with self._lock:
            if self._ab is None:
                raise ModelUpdateError(
                    "model updates need inference.state_dir", fix="set [inference] state_dir in the config"
                )
            with opened_bundle(src) as unpacked:
                slot, path = self._ab.stage(unpacked)
            try:
                verify_bundle(path, self._public_key(), threads=self.settings.threads, golden=False)
            except LewsError as exc:
                self._staged = None
                self._update = {"state": "rejected", "source": str(src), "reason": str(exc)}
                log.error("model update from %s rejected: %s", src, exc)
                raise ModelUpdateError(f"update {src} rejected: {exc.message}", fix=exc.fix) from exc
            self._staged = (slot, path)
            bundle_id = read_manifest(path)["bundle_id"]
            self._update = {"state": "staged", "slot": slot, "bundle_id": bundle_id, "source": str(src)}
            log.info("model update %s staged in slot %s; waiting for site level 0", bundle_id, slot)
            return dict(self._update)

    def try_switch(self, site_level_is_zero: Callable[[], bool]) -> bool:
        """Switch to the staged bundle if the predicate says the site is at level 0 right now."""
        with self._lock:
            if self._staged is None or self._ab is None:
                return False
            if not site_level_is_zero():
                self.counters["switch_deferred_level"] += 1
                self._update = {**self._update, "state": "staged_waiting_level_0"}
                return False
            slot, path = self._staged
            self._staged = None
            loaded, reasons = self.load(path)
            if loaded is not None and self._health_check is not None:
                try:
                    self._health_check(loaded)
                except LewsError as exc:
                    reasons.append(f"health check failed: {exc}")
                    loaded.backend.close()
                    loaded = None
            current_mode = self.mode
            if loaded is None or (current_mode != RULES_ONLY and loaded.backend.name != current_mode):
                if loaded is not None:
                    reasons.append(f"new bundle runs on {loaded.backend.name}, current on {current_mode}")
                    loaded.backend.close()
                self._update = {**self._update, "state": "rolled_back", "reason": "; ".join(reasons)}
                log.error("model update rolled back before switching: %s", "; ".join(reasons))
                return False
            old = self._loaded
            self._loaded = loaded
            self._ab.activate(slot, reason=f"update to {loaded.bundle_id}")
            self._reasons = reasons
            self._probation_left = self.settings.probation_runs
            self._update = {**self._update, "state": "probation", "switched_at": time.time()}
            if old is not None:
                old.backend.close()
            log.info(
                "switched to bundle %s (slot %s), probation %d runs",
                loaded.bundle_id,
                slot,
                self._probation_left,
            )
            return True

    def _rollback(self, reason: str) -> None:
        if self._ab is None:
            return
        prev = self._ab.previous()
        self._probation_left = 0
        failed = self._loaded
        self._loaded = None
        if failed is not None:
            failed.backend.close()
        if prev is not None:
            loaded, reasons = self.load(self._ab.slot_dir(prev))
            if loaded is not None:
                self._loaded = loaded
                self._ab.activate(prev, reason=f"rollback: {reason}")
            self._reasons = reasons
        self._update = {**self._update, "state": "rolled_back", "reason": reason}
        log.error("model update rolled back: %s; now %s", reason, self.mode)

    # ------------------------------------------------------------------ status / close
    def status(self) -> dict[str, Any]:
        loaded = self._loaded
        return {
            "mode": self.mode,
            "precision": loaded.backend.precision if loaded is not None else None,
            "bundle_id": loaded.bundle_id if loaded is not None else None,
            "bundle_dir": str(loaded.bundle_dir) if loaded is not None else None,
            "variants": (
                {e.name: loaded.backend.variant_id(e.name) for e in model_entries(loaded.manifest)}
                if loaded is not None
                else {}
            ),
            "warmup_ms": loaded.warmup_ms if loaded is not None else {},
            "fallback_reasons": list(self._reasons),
            "update": dict(self._update),
            "probation_runs_left": self._probation_left,
            "counters": dict(self.counters),
            "last_error": self._last_error,
        }

    def close(self) -> None:
        with self._lock:
            if self._loaded is not None:
                self._loaded.backend.close()
                self._loaded = None
