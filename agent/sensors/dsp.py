"""Butterworth design and IIR filtering in numpy alone (the daemon does not import scipy).

``butter_sos`` designs the same second-order sections as ``scipy.signal.butter(..., output="sos")``
(analog prototype, pre-warped bilinear transform, scipy's "nearest" pole/zero pairing with the
poles closest to the unit circle last, the gain in the first section); ``sosfilt`` computes what
``scipy.signal.sosfilt`` computes (direct form II transposed states, the same ``zi``/``zf`` layout),
and a first-order ``lfilter`` is the one-section case. Tests compare both with scipy and obspy
sample for sample (agreement to ~1e-12 of the signal's scale: the sums run in another order).

How ``sosfilt`` is vectorised: the cascade is one linear state-space system s' = A s + B x,
y = C s + D x with the sections' DF2T states as s. A block of ``L`` samples then is
``y = O s0 + T x`` and ``s_L = A^L s0 + R x`` (O, T, R precomputed per filter), so a long signal is
one matrix product over all its blocks plus a scan of the states from block to block,
``s_{k+1} = A^L s_k + R x_k``, itself done ``SCAN`` blocks per matrix product (the states of a chunk
are ``P s + M drive`` with P the powers of A^L and M their block Toeplitz matrix, built on the first
long input). The live path (blocks of 50) and the replay (whole captures) run the same code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

BLOCK = 128  # samples per matrix block: O(BLOCK) flops per sample, len(x) / BLOCK state steps
SCAN = 32  # block states per matrix product of the scan (long inputs: the replay's whole runs)


# ---- design ----------------------------------------------------------------------------------------
def _zpk_digital(order: int, wn: tuple[float, ...], btype: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Digital zeros, poles, gain of a Butterworth filter (scipy's buttap -> lp2bp/lp2hp -> bilinear)."""
    m = np.arange(-order + 1, order, 2)
    p = -np.exp(1j * np.pi * m / (2 * order))
    fs = 2.0
    warped = 2 * fs * np.tan(np.pi * np.asarray(wn, dtype=float) / fs)
    if btype == "bandpass":
        bw = warped[1] - warped[0]
        wo = math.sqrt(warped[0] * warped[1])
        p_lp = p * bw / 2
        root = np.sqrt(p_lp**2 - wo**2)
        p_a = np.concatenate((p_lp + root, p_lp - root))
        z_a = np.zeros(order)
        k_a = float(bw**order)
    elif btype == "highpass":
        wo = float(warped[0])
        p_a = wo / p
        z_a = np.zeros(order)
        k_a = float(np.real(1.0 / np.prod(-p)))
    elif btype == "lowpass":
        wo = float(warped[0])
        p_a = wo * p
        z_a = np.zeros(0)
        k_a = float(wo**order)
    else:
        raise ValueError(f"unknown btype {btype!r}")
    fs2 = 2 * fs
    z_d = (fs2 + z_a) / (fs2 - z_a)
    p_d = (fs2 + p_a) / (fs2 - p_a)
    z_d = np.append(z_d, -np.ones(len(p_a) - len(z_a)))
    k_d = k_a * float(np.real(np.prod(fs2 - z_a) / np.prod(fs2 - p_a)))
    return np.real(z_d), p_d, k_d


def _split_poles(p: np.ndarray) -> tuple[list[complex], list[float]]:
    """Conjugate pairs (one member, positive imaginary part) and real poles (scipy's _cplxreal)."""
    tol = 100 * np.finfo(float).eps
    real = np.abs(p.imag) <= tol * np.abs(p)
    pos = p[~real & (p.imag > 0)]
    neg = p[~real & (p.imag < 0)]
    pos = pos[np.lexsort((np.abs(pos.imag), pos.real))]
    neg = neg[np.lexsort((np.abs(neg.imag), neg.real))]
    pairs = [complex(a) for a in (pos + neg.conj()) / 2]
    return pairs, sorted(float(x) for x in p[real].real)


def butter_sos(order: int, wn: float | tuple[float, float], btype: str = "bandpass") -> np.ndarray:
    """``scipy.signal.butter(order, wn, btype, output="sos")`` for normalised ``wn`` (1 = Nyquist)."""
    wns = (wn,) if isinstance(wn, (int, float)) else tuple(wn)
    zeros, poles, gain = _zpk_digital(order, wns, btype)
    zs = sorted(float(z) for z in zeros)
    pairs, reals = _split_poles(poles)
    if (2 * len(pairs) + len(reals)) % 2 == 1:
        reals.append(0.0)
        zs.append(0.0)
    cands: list[complex] = [*pairs, *(complex(r) for r in reals)]
    n_sections = (2 * len(pairs) + len(reals)) // 2
    sos = np.zeros((n_sections, 6))

    def worst(ps: list[complex]) -> int:
        return int(np.argmin([abs(1 - abs(q)) for q in ps]))

    def nearest(zl: list[float], to: complex) -> float:
        i = int(np.argsort(np.abs(np.asarray(zl) - to), kind="quicksort")[0])
        return zl.pop(i)

    for si in range(n_sections - 1, -1, -1):
        p1 = cands.pop(worst(cands))
        if p1.imag != 0:
            a = np.array([1.0, -2 * p1.real, p1.real * p1.real + p1.imag * p1.imag])
        else:
            real_left = [q for q in cands if q.imag == 0]
            if not real_left:  # the last real pole: a first-order section (plus a pole at 0)
                z1 = nearest(zs, p1)
                sos[si] = [1.0, -z1, 0.0, 1.0, -p1.real, 0.0]
                continue
            p2 = real_left[worst(real_left)]
            cands.remove(p2)
            a = np.array([1.0, -(p1.real + p2.real), p1.real * p2.real])
        if zs:
            z1 = nearest(zs, p1)
            z2 = nearest(zs, p1) if zs else None
            b = np.array([1.0, -z1, 0.0]) if z2 is None else np.array([1.0, -(z1 + z2), z1 * z2])
        else:
            b = np.array([1.0, 0.0, 0.0])
        sos[si, :3], sos[si, 3:] = b, a
    sos[0, :3] *= gain
    return sos


def first_order_sos(c: float) -> np.ndarray:
    """y[n] = c x[n] + (1 - c) y[n-1] as one section: ``lfilter([c], [1, c - 1], ...)``."""
    return np.array([[c, 0.0, 0.0, 1.0, c - 1.0, 0.0]])


# ---- filtering ------------------------------------------------------------------------------------
@dataclass
class _BlockOps:
    o: np.ndarray  # (L, m): output from the initial state
    t: np.ndarray  # (L, L): output from the inputs (lower triangular Toeplitz)
    powers: list[np.ndarray]  # A^0 .. A^L
    r: np.ndarray  # (m, L): final state from the inputs
    scan: tuple[np.ndarray, np.ndarray] | None = None  # (SCAN, m, m) powers of A^L; (SCAN m, SCAN m) M


@functools.lru_cache(maxsize=16)
def _block_ops(sos_bytes: bytes, sections: int) -> _BlockOps:
    """The block matrices of a cascade, shared by every filter with the same sections (a seismic
    segment starts four filters; a gap or a re-anchor starts a new segment)."""
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(sections, 6)
    a_mat, b_vec, c_vec, d = _state_space(sos)
    m, n = a_mat.shape[0], BLOCK
    powers = [np.eye(m)]
    for _ in range(n):
        powers.append(a_mat @ powers[-1])
    o = np.array([c_vec @ powers[k] for k in range(n)])
    h = np.array([d] + [float(c_vec @ powers[k] @ b_vec) for k in range(n - 1)])  # impulse response
    idx = np.arange(n)
    lag = idx[:, None] - idx[None, :]
    t = np.where(lag >= 0, h[np.clip(lag, 0, n - 1)], 0.0)
    r = np.stack([powers[n - 1 - k] @ b_vec for k in range(n)], axis=1)
    return _BlockOps(o, t, powers, r)


def _scan_ops(a_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P[k] = a_n^k (k < SCAN) and M, block (k, j) = a_n^(k-1-j) for j < k, else 0."""
    m = a_n.shape[0]
    p = [np.eye(m)]
    for _ in range(SCAN):
        p.append(a_n @ p[-1])
    pw = np.array(p)
    k = np.arange(SCAN)
    lag = k[:, None] - 1 - k[None, :]
    blocks = np.where((lag >= 0)[:, :, None, None], pw[np.clip(lag, 0, SCAN)], 0.0)  # (k, j, m, m)
    return pw[:SCAN], blocks.transpose(0, 2, 1, 3).reshape(SCAN * m, SCAN * m)


def _state_space(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The cascade of DF2T sections as s' = A s + B x, y = C s + D x (s = the sections' zi, flattened)."""
    n = sos.shape[0]
    m = 2 * n
    a_mat, b_vec = np.zeros((m, m)), np.zeros(m)
    cu, du = np.zeros(m), 1.0  # the current section's input as cu . s + du x
    for i, (b0, b1, b2, a0, a1, a2) in enumerate(sos):
        if a0 != 1.0:
            b0, b1, b2, a1, a2 = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0
        j = 2 * i
        ej = np.zeros(m)
        ej[j] = 1.0
        a_mat[j] = (b1 - a1 * b0) * cu - a1 * ej
        a_mat[j, j + 1] += 1.0
        b_vec[j] = (b1 - a1 * b0) * du
        a_mat[j + 1] = (b2 - a2 * b0) * cu - a2 * ej
        b_vec[j + 1] = (b2 - a2 * b0) * du
        cu, du = b0 * cu + ej, b0 * du
    return a_mat, b_vec, cu, du


@dataclass
class SosFilter:
    """A streaming cascade: ``filter(x)`` continues from the state the previous call left."""

    sos: np.ndarray
    zi: np.ndarray = field(init=False)
    _ops: _BlockOps = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.sos = np.atleast_2d(np.asarray(self.sos, dtype=np.float64))
        self.zi = np.zeros((self.sos.shape[0], 2))
        self._ops = _block_ops(self.sos.tobytes(), self.sos.shape[0])

    def filter(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).ravel()
        ops, n = self._ops, BLOCK
        s = self.zi.ravel().copy()
        full = len(x) // n
        y = np.empty(len(x))
        if full:
            xb = x[: full * n].reshape(full, n)
            forced = xb @ ops.t.T  # (full, n)
            drive = xb @ ops.r.T  # (full, m)
            a_n = ops.powers[n]
            states = np.empty((full, len(s)))
            if full == 1:
                states[0], s = s, a_n @ s + drive[0]
            else:
                if ops.scan is None:
                    ops.scan = _scan_ops(a_n)
                pw, mat = ops.scan
                for c in range(0, full, SCAN):
                    k = min(SCAN, full - c)
                    states[c : c + k] = pw[:k] @ s + (
                        mat[: k * len(s), : k * len(s)] @ drive[c : c + k].ravel()
                    ).reshape(k, -1)
                    s = a_n @ states[c + k - 1] + drive[c + k - 1]
            y[: full * n] = (forced + states @ ops.o.T).ravel()
        rest = len(x) - full * n
        if rest:
            xr = x[full * n :]
            y[full * n :] = ops.o[:rest] @ s + ops.t[:rest, :rest] @ xr
            s = ops.powers[rest] @ s + ops.r[:, n - rest :] @ xr
        self.zi = s.reshape(self.zi.shape)
        return y


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-shot ``scipy.signal.sosfilt(sos, x, zi=zi)``: (y, zf)."""
    f = SosFilter(sos)
    if zi is not None:
        f.zi = np.asarray(zi, dtype=np.float64).reshape(f.zi.shape).copy()
    y = f.filter(x)
    return y, f.zi
