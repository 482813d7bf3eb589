"""Model bundles and inference on the gateway (no torch here; docs/bundle-format.md, docs/jetson.md).

manifest (schema, canonical bytes) -> verify (signature, sha256, ONNX vs manifest, golden vectors)
-> backends (ort_backend; trt_backend + cuda_mem + engine_meta) -> manager (fallback, warm-up,
A/B updates in ab, tar bundles in archive); settings is the `[inference]` config section and cli
adds `agent bundle verify`.
"""
