"""Coefficients of P. J. Acklam's rational approximation of the inverse normal CDF (ndtri).

The reference noise uses ``torch.special.ndtri``; neither Triton nor numba has it, so the Triton
kernel and the CPU fast step evaluate this approximation instead (relative error below 1.2e-9 in
exact arithmetic, so in fp32 the result is within a few ulp of torch's). The uniforms it is applied
to are bit-identical to ``eqr.kernels.rng``'s, so the noise agrees with the reference to rounding.

For p < P_LOW (and symmetrically 1 - p < P_LOW) the tail form in t = sqrt(-2·log p) is used,
otherwise the central form in q = p - 1/2, r = q².
"""

from __future__ import annotations

P_LOW = 0.02425
# central region: x = q·(((((A0 r + A1) r + A2) r + A3) r + A4) r + A5) / (((((B0 r + B1) r + B2) r + B3) r + B4) r + 1)
A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01,
     2.506628277459239e00)  # fmt: skip
B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
# lower tail: x = (((((C0 t + C1) t + C2) t + C3) t + C4) t + C5) / ((((D0 t + D1) t + D2) t + D3) t + 1)
C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00,
     2.938163982698783e00)  # fmt: skip
D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
