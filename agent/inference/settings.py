"""The `[inference]` section of the agent configuration (pydantic; unknown keys are rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The demo bundle and its DEMO-ONLY key ship in the repository (bundles/); the bundle default points
# there by absolute path so `agent demo` works from any working directory. The key is no default (its
# private half is public): `agent demo` names it, real sites set their own.
_REPO = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = _REPO / "bundles" / "demo"
DEMO_PUBLIC_KEY = _REPO / "bundles" / "demo-keys" / "signing.pub"


class InferenceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bundle_dir: Path = Field(
        default=DEMO_BUNDLE,
        description="Model bundle used at first start (a directory with manifest.json). With state_dir set, "
        "it is copied into slot A once; later updates are installed beside it (A/B).",
    )
    public_key: Path | None = Field(
        default=None,
        description="Ed25519 public key (PEM) that bundles must be signed with. No default: unset, no "
        "bundle is trusted (rules-only). The demo key (bundles/demo-keys/signing.pub) is for demos only: "
        "its private half is in the repository, and `agent diagnose` fails a production config that "
        "trusts it.",
    )
    backend: Literal["onnxruntime", "tensorrt"] = Field(
        default="onnxruntime",
        description="Preferred runtime. tensorrt needs an engine built on this device "
        "(`agent-export engine`); "
        "on any problem the agent falls back to onnxruntime, then to rules-only mode, and says so in status.",
    )
    precision: Literal["int8", "fp32"] = Field(
        default="int8", description="Which ONNX variant to run: the Q/DQ INT8 graph or the FP32 graph."
    )
    threads: int = Field(default=1, ge=1, le=64, description="onnxruntime intra-op threads.")
    use_cuda: bool = Field(
        default=True, description="Use onnxruntime's CUDA provider when this onnxruntime build has it."
    )
    golden_tolerance: float = Field(
        default=1.0,
        gt=0.0,
        le=100.0,
        description="Multiplier of the manifest's golden-vector tolerances (1.0 = as validated).",
    )
    state_dir: Path | None = Field(
        default=None,
        description="Directory for A/B model slots (e.g. /var/lib/lews-agent/models). "
        "Unset: updates disabled.",
    )
    probation_runs: int = Field(
        default=20,
        ge=1,
        description="After switching to a new bundle, this many successful inferences commit it; a failure "
        "before that rolls back to the previous bundle.",
    )
