#!/usr/bin/env bash
# Install the lews-agent gateway runtime on a Jetson (JetPack 6.1 / 6.2: Python 3.10, TensorRT 10.3;
# JetPack 7: Python 3.12, TensorRT 10.x), in one command, from a clone of this repository:
#
#     sudo systemd/install-jetson.sh                 # venv in /opt/lews-agent/.venv, then a report
#     sudo systemd/install-jetson.sh --check         # only the report (what is installed / found)
#     options: --prefix DIR (default /opt/lews-agent)  --no-pycuda  --python /usr/bin/python3.X
#
# What it does: copies the source to PREFIX (unless it runs from there), creates PREFIX/.venv with
# --system-site-packages so the venv sees JetPack's TensorRT Python bindings (python3-libnvinfer,
# built for the system Python only), installs the runtime (`pip install PREFIX`: no extras, so no torch,
# no training toolchain) and pycuda (built against /usr/local/cuda), then reports the Python,
# TensorRT, CUDA and GPU it found and whether `import tensorrt` works inside the venv.
# It does not install the systemd unit or udev rules (docs/deployment.md) and changes no system package.
# See docs/jetson.md for what has and has not been run on a device.
set -euo pipefail

PREFIX=/opt/lews-agent
PY=/usr/bin/python3
PYCUDA=1
CHECK_ONLY=0
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --no-pycuda) PYCUDA=0; shift ;;
    --check) CHECK_ONLY=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
VENV=$PREFIX/.venv

say() { printf '%-22s %s\n' "$1" "$2"; }
fail() { echo "error: $1" >&2; echo "fix: $2" >&2; exit 1; }

# --- what is this device ----------------------------------------------------------------------
l4t="none (not a Jetson?)"
if [ -r /etc/nv_tegra_release ]; then
  l4t=$(head -n 1 /etc/nv_tegra_release | sed -E 's/^# R([0-9]+) \(release\), REVISION: ([0-9.]+).*/R\1.\2/')
fi
jetpack=$(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null || echo "not installed (apt-get install nvidia-jetpack)")
model=unknown
[ -r /proc/device-tree/model ] && model=$(tr -d '\0' </proc/device-tree/model)
case "$l4t" in
  R35.*) echo "warning: Jetson Linux $l4t (JetPack 5) has TensorRT 8: the agent will run on onnxruntime" >&2 ;;
  R36.3*|R36.2*) echo "warning: Jetson Linux $l4t (JetPack 6.0) has TensorRT 8.6: onnxruntime only; JetPack 6.1+ for TensorRT 10" >&2 ;;
esac

command -v "$PY" >/dev/null || fail "$PY not found" "pass --python /usr/bin/python3.10 (JetPack 6) or python3.12 (JetPack 7)"
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$pyver" in
  3.10|3.11|3.12) ;;
  *) fail "Python $pyver: the gateway runtime supports 3.10-3.12" "pass --python with the JetPack system Python" ;;
esac

# --- install ----------------------------------------------------------------------------------
if [ "$CHECK_ONLY" = 0 ]; then
  [ "$(id -u)" = 0 ] || [ -w "$(dirname "$PREFIX")" ] || fail "cannot write $PREFIX" "run with sudo"
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || fail "the venv module is missing for $PY" "sudo apt-get install python3-venv"
  if [ "$SRC" != "$PREFIX" ]; then
    mkdir -p "$PREFIX"
    tar -C "$SRC" --exclude=./.venv --exclude=./.venv310 --exclude=./.git -cf - . | tar -C "$PREFIX" -xf -
  fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # The runtime only: no [train]/[dev] extras, so pip never pulls torch on the gateway.
  "$VENV/bin/python" -m pip install -q "$PREFIX"
  if [ "$PYCUDA" = 1 ]; then
    export PATH=/usr/local/cuda/bin:$PATH CUDA_ROOT=/usr/local/cuda
    if command -v nvcc >/dev/null; then
      "$VENV/bin/python" -m pip install -q pycuda || echo "warning: pycuda did not build; the TensorRT backend needs it (see docs/jetson.md)" >&2
    else
      echo "warning: nvcc not found in /usr/local/cuda/bin: pycuda not built (sudo apt-get install cuda-toolkit-12-6 or nvidia-jetpack)" >&2
    fi
  fi
fi

# --- report -----------------------------------------------------------------------------------
PYV=$VENV/bin/python
[ -x "$PYV" ] || PYV=$PY
cuda=$(sed -nE 's/.*"cuda" *: *\{[^}]*"version" *: *"([^"]+)".*/\1/p' /usr/local/cuda/version.json 2>/dev/null | head -n 1 || true)
[ -n "$cuda" ] || cuda=$(nvcc --version 2>/dev/null | sed -nE 's/.*release ([0-9.]+).*/\1/p' || true)
echo "lews-agent gateway install report"
say "device" "$model"
say "Jetson Linux" "$l4t"
say "JetPack" "$jetpack"
say "CUDA toolkit" "${cuda:-not found (/usr/local/cuda)}"
say "venv" "$( [ -x "$VENV/bin/python" ] && echo "$VENV (system site packages)" || echo "not created" )"
"$PYV" - <<'PYEOF'
import importlib.util, platform
def row(k, v): print(f"{k:<22} {v}")
row("python", platform.python_version())
for mod in ("numpy", "onnxruntime"):
    try:
        m = __import__(mod); row(mod, m.__version__)
    except Exception as exc:
        row(mod, f"NOT importable ({exc})")
try:
    import tensorrt as trt
    row("tensorrt", f"{trt.__version__} (nptype float32 -> {trt.nptype(trt.float32).__name__})")
except Exception as exc:
    row("tensorrt", f"NOT importable in this venv ({type(exc).__name__}: {exc}); the agent will use onnxruntime")
try:
    import pycuda.driver as cuda
    cuda.init()
    dev = cuda.Device(0)
    cc = "%d.%d" % dev.compute_capability()
    row("GPU", f"{dev.name()} (compute capability {cc}, {dev.total_memory() >> 20} MiB), CUDA driver {cuda.get_driver_version()}")
except Exception as exc:
    row("GPU", f"not usable through pycuda ({type(exc).__name__}: {exc})")
row("torch", "installed (not needed on the gateway)" if importlib.util.find_spec("torch") else "not installed (as intended)")
PYEOF
echo
echo "next: $VENV/bin/agent selftest --config /etc/lews-agent/agent.toml --backend tensorrt"
echo "      (or --bundle DIR --public-key KEY; it verifies the bundle, builds the engine, times a batch)"
