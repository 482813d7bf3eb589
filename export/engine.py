"""`agent-export engine BUNDLE_DIR`: build TensorRT 10 engines on the target device from the bundle's ONNX.

The builder itself lives in agent/inference/trt_build.py (torch-free, so `agent selftest` on a
gateway can build engines too); this module is the toolchain's name for it. Strongly typed networks
only, an optimisation profile whose opt shape is the daemon's batch, a checked timing cache, and the
engine recorded with its sidecar only after the golden vectors reproduce through it.
"""

from __future__ import annotations

from agent.inference.trt_build import (
    DAEMON_BATCH,
    TIMING_CACHE,
    BuildOptions,
    _set_aside,
    build_engines,
    build_plan,
    parser_errors,
    profile_shapes,
)

__all__ = [
    "DAEMON_BATCH",
    "TIMING_CACHE",
    "BuildOptions",
    "_set_aside",
    "build_engines",
    "build_plan",
    "parser_errors",
    "profile_shapes",
]
