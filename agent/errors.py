"""Typed exceptions of the agent and the toolchain, in one place.

Every error names the thing that is wrong and, in ``fix``, what the user should do about it.
Areas own a section each; add new classes to your area's section.
"""

from __future__ import annotations


class LewsError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


# --- configuration ---------------------------------------------------------------------------------
class ConfigError(LewsError):
    """The configuration file is missing, malformed, unsafe or inconsistent."""


# --- data (site series, rasters, captures) ----------------------------------------------------------
class DataError(LewsError):
    """An input data file is malformed, inconsistent or in the wrong units."""


class SiteSeriesError(DataError):
    """A site-series CSV (or the source it is imported from) cannot be used as is."""


class RainCatalogueError(DataError):
    """A rain record, landslide list or day table for threshold calibration cannot be used as is."""


class RasterError(DataError):
    """A raster tile / stack / patch cannot be used as is."""


# --- sensors and ingestion -------------------------------------------------------------------------
class SensorError(LewsError):
    """A sensor or its serial port misbehaves."""


class SerialPortError(SensorError):
    """A serial port is missing, not permitted, or vanished."""


class CaptureError(DataError):
    """A raw serial capture cannot be read or replayed."""


class Unsupported(SensorError):
    """A fast path (the columnar replay) cannot reproduce the reference path on this input; the
    caller runs the reference path instead. The message says what it met."""


class StoreError(LewsError):
    """The SQLite time-series store cannot be opened or written."""


class FeatureWindowError(LewsError):
    """The store does not hold enough data for a model's input window; ``completeness`` says how much."""

    def __init__(self, message: str, *, fix: str = "", completeness: float = 0.0) -> None:
        super().__init__(message, fix=fix)
        self.completeness = completeness


# --- models, bundles and inference -----------------------------------------------------------------
class BundleError(LewsError):
    """A model bundle is not trustworthy or not usable."""


class BundleSchemaError(BundleError):
    """manifest.json does not follow the schema, or disagrees with the ONNX files."""


class BundleIntegrityError(BundleError):
    """A bundle file is missing, truncated or its sha256 differs from the manifest."""


class BundleSignatureError(BundleError):
    """The bundle is unsigned or its Ed25519 signature does not verify."""


class GoldenMismatchError(BundleError):
    """The golden vectors do not reproduce within tolerance."""


class EngineMismatchError(BundleError):
    """A TensorRT engine was built for another device, TensorRT version or ONNX file."""


class BackendUnavailableError(LewsError):
    """An inference backend (tensorrt, CUDA provider, ...) is not installed or has no device."""


class InferenceTimeoutError(BackendUnavailableError):
    """A call into the inference thread did not return within its deadline (hung GPU/driver)."""


class SelftestError(LewsError):
    """`agent selftest` could not run or a stage of it failed (bundle, engine, golden, timed batch)."""


class InferenceInputError(LewsError):
    """Inputs given to a model do not match its manifest entry (names, shapes, dtypes, finiteness)."""


class ModelUpdateError(BundleError):
    """A new bundle could not be installed, switched to, or was rolled back."""


# --- warnings and publishing -----------------------------------------------------------------------
class WarningRuleError(LewsError):
    """A warning rule got inputs it cannot judge."""


class AlertStateError(WarningRuleError):
    """The alert state cannot be restored, or an operator command does not fit the current alert."""


class PublishError(LewsError):
    """MQTT connection, TLS or credentials problem."""


class OutboxError(LewsError):
    """The durable outbox cannot store a message (disk full, corrupt database)."""


class CommandRejected(PublishError):
    """An inbound cmd/ message failed authentication, freshness, replay or rate checks.

    ``reason`` is a short counter key (bad_signature, stale, replay, rate_limited, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(
            f"command rejected ({reason}): {message}",
            fix="sign commands with a configured key, a fresh ts and a new nonce; respect the rate limit",
        )
        self.reason = reason


# --- reports, status page, metrics -----------------------------------------------------------------
class ReportError(LewsError):
    """A report cannot be made from the given state (missing store, unreadable status, bad window)."""


class WebError(LewsError):
    """The local status page cannot start (address in use, unreadable password file, bad settings)."""


class SupportArchiveError(LewsError):
    """`agent diagnose --bundle` cannot write the support archive."""


class UnknownCheckError(LewsError):
    """`agent diagnose --only/--skip` (or `diagnose.skip`) names a check that does not exist."""


class DemoStalled(LewsError):
    """`agent demo` in lockstep: the daemon did not take in or evaluate a step within its time limit."""


# --- toolchain -------------------------------------------------------------------------------------
class TrainingError(LewsError):
    """Training or evaluation cannot proceed with the given runs/data."""


class ExportError(LewsError):
    """ONNX export, quantization or engine build failed."""
