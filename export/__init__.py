"""Offline toolchain: data, training, evaluation, ONNX/INT8 export, TensorRT engines, bundles (torch here)."""

from __future__ import annotations

__version__ = "0.1.0"
