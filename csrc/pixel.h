// Per-pixel math shared by the CPU and the CUDA kernels: written once, compiled by both, so the
// two back-ends cannot drift apart (the tests compare both to one NumPy reference).
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define FF_HD __host__ __device__ __forceinline__
#else
#define FF_HD inline
#endif

namespace fastfill {

FF_HD uint32_t f32_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

FF_HD float bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// float -> IEEE half, round to nearest even (what NumPy's astype(float16) does).
FF_HD uint16_t float_to_half(float f) {
  uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (ax < 0x38800000u) {
    // Half subnormal or zero: adding 0.5f lines the half's mantissa up with the float's low bits
    // and lets the FPU do the round-to-nearest-even.
    float af = bits_f32(ax) + 0.5f;
    return uint16_t(sign | (f32_bits(af) - 0x3f000000u));
  }
  const uint32_t odd = (ax >> 13) & 1u;
  ax += 0xc8000fffu + odd;  // rebias the exponent (127 -> 15) and round to nearest even
  return uint16_t(sign | (ax >> 13));
}

FF_HD float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    return bits_f32(sign | f32_bits(float(mant) * 5.9604644775390625e-08f));  // mant * 2^-24, exact
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Index of the source pixel for output index i of an axis of length n, reflect-padded at the end
// (NumPy's mode="reflect": no edge repeat; pads longer than n keep reflecting).
FF_HD int64_t reflect_index(int64_t i, int64_t n) {
  if (i < n) return i;
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  i %= period;
  return i < n ? i : period - i;
}

// Prediction in [0, 1] -> byte: rint(p * 255) clamped; NaN and negatives give 0.
FF_HD uint8_t to_byte(float p) {
  const float v = p * 255.0f;
  if (!(v > 0.0f)) return 0;
  if (v >= 255.0f) return 255;
#ifdef __CUDA_ARCH__
  return uint8_t(rintf(v));
#else
  return uint8_t(__builtin_rintf(v));
#endif
}

FF_HD float byte_to_unit(uint8_t v) { return float(v) / 255.0f; }

}  // namespace fastfill
