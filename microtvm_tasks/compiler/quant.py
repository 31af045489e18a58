"""Compile-time quantisation arithmetic, done exactly as TFLite does it.

Everything here runs in Python at compile time so that the generated C only holds
integers: fixed-point multipliers and shifts (TFLite's QuantizeMultiplier), quantised
activation clamps (CalculateActivationRangeQuantized). Being bit exact with TFLite Micro
depends on these matching TFLite's double / float arithmetic step by step, so the order
of operations below mirrors the reference implementation on purpose.
"""

from __future__ import annotations

import math

from .ir import Tensor

INT_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (-(2**31), 2**31 - 1),
}


def tflite_round(x: float) -> float:
    """std::round: halves away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier Q0.31, shift) with real ~= multiplier * 2^(shift - 31); shift > 0 is a left shift."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def conv_multipliers(inp: Tensor, weights: Tensor, out: Tensor, channels: int) -> tuple[list[int], list[int]]:
    """Per-output-channel (multiplier, shift) lists for conv / FC-like ops.

    effective scale = input_scale * filter_scale[c] / output_scale, in double, in that order
    (TFLite's PopulateConvolutionQuantizationParams). A per-tensor filter gives the same
    value for every channel.
    """
    assert weights.quant is not None and inp.quant is not None and out.quant is not None
    scales = weights.quant.scale
    mults: list[int] = []
    shifts: list[int] = []
    for c in range(channels):
        fs = float(scales[c] if len(scales) > 1 else scales[0])
        m, s = quantize_multiplier(float(inp.scale) * fs / float(out.scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def _f32(x: float) -> float:
    import numpy as np

    return float(np.float32(x))


def quantize_value(t: Tensor, f: float) -> int:
    """TFLite's Quantize(scale, zero_point, f): round(f / scale) in float32, plus zero point."""
    import numpy as np

    tmp = tflite_round(float(np.float32(f) / np.float32(t.scale)))
    return t.zero_point + int(tmp)


def activation_range(activation: str | None, out: Tensor) -> tuple[float, float] | tuple[int, int]:
    """The clamp an op's fused activation implies on its output, in the output's domain.

    int8/uint8/int16: TFLite's CalculateActivationRangeQuantized; float32: plain bounds
    (+-FLT_MAX when there is no activation).
    """
    act = activation or "NONE"
    if out.dtype == "float32":
        big = 3.4028234663852886e38
        return {
            "NONE": (-big, big),
            "RELU": (0.0, big),
            "RELU6": (0.0, 6.0),
            "RELU_N1_TO_1": (-1.0, 1.0),
        }[act]
    qmin, qmax = INT_RANGES[out.dtype]
    if act == "NONE":
        return qmin, qmax
    if act == "RELU":
        return max(qmin, quantize_value(out, 0.0)), qmax
    if act == "RELU6":
        return max(qmin, quantize_value(out, 0.0)), min(qmax, quantize_value(out, 6.0))
    if act == "RELU_N1_TO_1":
        return max(qmin, quantize_value(out, -1.0)), min(qmax, quantize_value(out, 1.0))
    raise ValueError(f"unknown activation {act}")


def c_float(x: float) -> str:
    """A float32 literal that round-trips exactly (C99 hex float, 'f' suffix)."""
    import numpy as np

    v = np.float32(x)
    if np.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    if v == np.float32(3.4028234663852886e38):
        return "FLT_MAX"
    if v == np.float32(-3.4028234663852886e38):
        return "(-FLT_MAX)"
    return float(v).hex() + "f"


def sse2_rmul(shifts: list[int]):
    """2^(32 - right) per channel for the SSE2 requantisation (dot_s8.h mt_requant4), or None
    when some channel needs a left shift or no shift (that layer keeps the scalar path)."""
    import numpy as np

    if not shifts or any(s > -1 or s < -31 for s in shifts):
        return None
    return np.asarray([1 << (32 + s) for s in shifts], dtype=np.uint32)
