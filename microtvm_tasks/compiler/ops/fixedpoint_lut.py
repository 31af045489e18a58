"""Compile-time emulation of TFLite's int8 LOGISTIC and TANH, producing 256-entry tables.

Why a table: an int8 input has only 256 possible values, so the whole fixed-point
computation TFLite Micro performs per element (input rescale with MultiplyByQuantizedMultiplier,
then gemmlowp's fixed-point exp / Newton-Raphson reciprocal, then a rounding shift into the
int8 output) can be run here in Python once per value. The generated C then only does a
table lookup: bit-exact with TFLite Micro, integer-only, and faster than the reference.

The arithmetic below is a re-statement of the published fixed-point semantics (Q-format
numbers stored in int32 with a given number of integer bits; products use the saturating,
rounding doubling high multiply; rescales use rounding power-of-two divides or saturating
left shifts). Python integers are unbounded, so every int32 add/sub is wrapped explicitly.
"""

from __future__ import annotations

import math

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def wrap32(x: int) -> int:
    """Two's complement int32 wrap-around (what C int32 arithmetic does on our targets)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul: round(a*b / 2^31), halves away from zero."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    n = ab + nudge
    q = abs(n) >> 31  # C division truncates toward zero
    return q if n >= 0 else -q


def rdbypot(x: int, exponent: int) -> int:
    """RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def sr_mul_pot(x: int, exponent: int) -> int:
    """SaturatingRoundingMultiplyByPOT: saturating left shift or rounding right shift."""
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbypot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return wrap32(x << exponent)


def mbqm(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (TFLite's default double-rounding form)."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rdbypot(srdhm(wrap32(x * (1 << left)), multiplier), right)


def _one(integer_bits: int) -> int:
    return INT32_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def _rescale(raw: int, src_bits: int, dst_bits: int) -> int:
    return sr_mul_pot(raw, src_bits - dst_bits)


def _exp_on_quarter_interval(a: int) -> int:
    """exp(a) for a in [-1/4, 0), a and result in Q0.31: Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8)
    one_third = 715827883
    x = wrap32(a + (1 << 28))  # a + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = sr_mul_pot(x4, -2)
    poly = sr_mul_pot(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_BARREL = (
    (-2, 1672461947),
    (-1, 1302514674),
    (0, 790015084),
    (1, 290630308),
    (2, 39332535),
    (3, 720401),
    (4, 242),
)


def exp_on_negative_values(a: int, integer_bits: int) -> int:
    """exp(a) for a <= 0 given with `integer_bits` integer bits; result Q0.31."""
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod_q_minus_q = wrap32((a & mask) - one_quarter)
    result = _exp_on_quarter_interval(_rescale(a_mod_q_minus_q, integer_bits, 0))
    remainder = wrap32(a_mod_q_minus_q - a)
    for exponent, multiplier in _BARREL:
        if integer_bits > exponent:
            if remainder & (1 << (frac_bits + exponent)):
                result = srdhm(result, multiplier)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        if a < clamp:
            result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _newton_reciprocal_half(a: int) -> int:
    """Shared start of 1/(1+x) and (1-x)/(1+x): x ~= 1/half_denominator in Q2.29."""
    s = a + INT32_MAX
    half_den = s + (1 if s >= 0 else -1)
    half_den = abs(half_den) // 2 * (1 if half_den >= 0 else -1)  # C truncating division
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))  # 48/17 - 32/17 * d
    for _ in range(3):
        hdx = srdhm(half_den, x)
        one_minus = wrap32(_one(2) - hdx)
        x = wrap32(x + _rescale(srdhm(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x(a: int) -> int:
    """1 / (1 + a) for a in [0, 1], Q0.31 in and out."""
    x = _newton_reciprocal_half(a)
    return _rescale(x, 1, 0)  # ExactMulByPot<-1> (Q2 -> Q1 by relabelling), then rescale


def one_minus_x_over_one_plus_x(a: int) -> int:
    x = _newton_reciprocal_half(a)
    return _rescale(wrap32(x - _one(2)), 2, 0)


def fp_logistic(a: int, integer_bits: int) -> int:
    """gemmlowp-style logistic of a Q(integer_bits) number; result Q0.31."""
    if a == 0:
        return 1 << 30
    abs_a = a if a > 0 else wrap32(-a)
    pos = one_over_one_plus_x(exp_on_negative_values(wrap32(-abs_a), integer_bits))
    return pos if a > 0 else wrap32(INT32_MAX - pos)


def fp_tanh(a: int, integer_bits: int) -> int:
    """gemmlowp-style tanh of a Q(integer_bits) number; result Q0.31."""
    if a == 0:
        return 0
    n = a if a < 0 else wrap32(-a)
    # exp(2n): the same raw value read with one more integer bit.
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(n, integer_bits + 1))
    return wrap32(-t) if a < 0 else t


def _tflite_round(x: float) -> float:
    return math.copysign(math.floor(abs(x) + 0.5), x)


def _input_rescale(scale: float, input_integer_bits: int) -> tuple[int, int, int]:
    """(multiplier, left shift, range radius) as TFLite Micro's int8 LOGISTIC/TANH prepare."""
    import numpy as np

    real = float(np.float32(scale)) * float(1 << (31 - input_integer_bits))
    q, shift = math.frexp(real)
    multiplier = int(_tflite_round(q * (1 << 31)))
    max_rescaled = 1.0 * ((1 << input_integer_bits) - 1) * (1 << (31 - input_integer_bits))
    max_rescaled = max_rescaled / 2.0**shift
    return multiplier, shift, int(math.floor(max_rescaled))


def logistic_table_s8(input_scale: float, input_zero_point: int) -> list[int]:
    """out[q + 128] for every int8 input q: TFLite's int8 LOGISTIC (output 1/256, -128)."""
    integer_bits = 4
    mult, shift, radius = _input_rescale(input_scale, integer_bits)
    table = []
    for q in range(-128, 128):
        x = q - input_zero_point
        if x <= -radius:
            table.append(-128)
        elif x >= radius:
            table.append(127)
        else:
            y = fp_logistic(mbqm(x, mult, shift), integer_bits)
            y = rdbypot(y, 31 - 8) - 128
            table.append(min(max(y, -128), 127))
    return table


def tanh_table_s8(input_scale: float, input_zero_point: int) -> list[int]:
    """out[q + 128] for every int8 input q: TFLite's int8 TANH (output 1/128, 0)."""
    integer_bits = 4
    mult, shift, radius = _input_rescale(input_scale, integer_bits)
    table = []
    for q in range(-128, 128):
        x = q - input_zero_point
        if x <= -radius:
            table.append(-128)
        elif x >= radius:
            table.append(127)
        else:
            y = fp_tanh(mbqm(x, mult, shift), integer_bits)
            y = rdbypot(y, 31 - 7)
            table.append(min(max(y, -128), 127))
    return table
