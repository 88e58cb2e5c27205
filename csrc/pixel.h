// Per-pixel math shared by the CPU and the CUDA kernels: written once, compiled by both, so the
// two back-ends cannot drift apart (the tests compare both to one NumPy reference). The bodies of
// prepare and composite for one pixel are here; each back-end is an index loop around them.
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

// A prediction element as a float: float32 as is, float16 (its bits in a uint16_t) widened.
FF_HD float to_float(float v) { return v; }
FF_HD float to_float(uint16_t h) { return half_to_float(h); }

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

// One output element type of prepare computed on the fly (the GPU's form; the CPU uses a table
// with the same values, see ops_cpu.cpp). T: float, or uint16_t holding float16 bits.
template <class T>
struct Direct {
  const float* mean;
  FF_HD T from_float(float v) const;
  FF_HD T from_byte(uint8_t v) const { return from_float(byte_to_unit(v)); }
  FF_HD T hole(int c) const { return from_float(mean[c]); }
  FF_HD T one() const { return from_float(1.0f); }
  FF_HD T zero() const { return from_float(0.0f); }
};
template <>
FF_HD float Direct<float>::from_float(float v) const { return v; }
template <>
FF_HD uint16_t Direct<uint16_t>::from_float(float v) const { return float_to_half(v); }

// prepare, one output pixel: o points at channel 0 of it in an [.., C, H, W] output whose planes
// are `plane` elements apart. p: its source pixel (RGB bytes); hole: the source's mask; fv: the
// prefill's RGB for a hole pixel (null: the flat hole colour); inside: not in the reflect padding,
// whose mask channel is 0 (the padding is context, never hole, even where it mirrors hole pixels).
// V maps values to the output type: from_byte, from_float, hole(c), one(), zero().
template <class T, class V>
FF_HD void prepare_pixel(T* o, int64_t plane, bool mask_channel, const uint8_t* p, bool hole,
                         const float* fv, bool inside, const V& v) {
  if (hole && fv) {
    o[0] = v.from_float(fv[0]);
    o[plane] = v.from_float(fv[1]);
    o[2 * plane] = v.from_float(fv[2]);
  } else {
    o[0] = hole ? v.hole(0) : v.from_byte(p[0]);
    o[plane] = hole ? v.hole(1) : v.from_byte(p[1]);
    o[2 * plane] = hole ? v.hole(2) : v.from_byte(p[2]);
  }
  if (mask_channel) o[3 * plane] = (hole && inside) ? v.one() : v.zero();
}

// composite, one pixel: o (RGB bytes) gets the prediction where hole, else the source pixel p.
// load(k) reads the prediction at channel 0 + k planes of this pixel, as a float.
template <class Load>
FF_HD void composite_pixel(uint8_t* o, const uint8_t* p, bool hole, const Load& load) {
  if (hole) {
    o[0] = to_byte(load(0));
    o[1] = to_byte(load(1));
    o[2] = to_byte(load(2));
  } else {
    // Copy through temporaries so that `o` may alias `p` (in-place compositing).
    const uint8_t p0 = p[0], p1 = p[1], p2 = p[2];
    o[0] = p0;
    o[1] = p1;
    o[2] = p2;
  }
}

}  // namespace fastfill
