// CPU implementations: one pass over the pixels, rows split across OpenMP threads.
#include <vector>

#include "ops.h"
#include "pixel.h"

namespace fastfill {
namespace {

// One output element type per instantiation: float32, or float16 stored as its bits.
struct F32 {
  using T = float;
  static T conv(float v) { return v; }
};
struct F16 {
  using T = uint16_t;
  static T conv(float v) { return float_to_half(v); }
};

template <class O>
void prepare_impl(const PrepareArgs& a) {
  using T = typename O::T;
  const Frame& f = a.f;
  const int64_t C = a.mask_channel ? 4 : 3;
  const int64_t plane = a.Hp * a.Wp;
  // Byte -> output value through a table: the same float(v) / 255 as the reference, computed once.
  T lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = O::conv(byte_to_unit(uint8_t(v)));
  const T fill[3] = {O::conv(a.mean[0]), O::conv(a.mean[1]), O::conv(a.mean[2])};
  const T one = O::conv(1.0f), zero = O::conv(0.0f);
  // Source column of every output column (reflect padding on the right).
  std::vector<int64_t> colmap(a.Wp);
  for (int64_t x = 0; x < a.Wp; ++x) colmap[x] = f.left + reflect_index(x, f.w);
  T* out = static_cast<T*>(a.out);
  const int64_t rows = f.n * a.Hp;

#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / a.Hp, y = r % a.Hp;
    const int64_t sy = f.top + reflect_index(y, f.h);
    const uint8_t* img = a.images + ((b * f.H + sy) * f.W) * 3;
    const uint8_t* msk = a.masks + (b * f.H + sy) * f.W;
    T* o = out + b * C * plane + y * a.Wp;
    T* o0 = o;
    T* o1 = o + plane;
    T* o2 = o + 2 * plane;
    T* o3 = a.mask_channel ? o + 3 * plane : nullptr;
    const bool pad_row = y >= f.h;
    for (int64_t x = 0; x < a.Wp; ++x) {
      const int64_t sx = colmap[x];
      const uint8_t* p = img + sx * 3;
      const bool hole = msk[sx] != 0;
      if (hole && a.fill) {
        const float* v = a.fill + ((b * f.h + sy - f.top) * f.w + sx - f.left) * 3;
        o0[x] = O::conv(v[0]);
        o1[x] = O::conv(v[1]);
        o2[x] = O::conv(v[2]);
      } else {
        o0[x] = hole ? fill[0] : lut[p[0]];
        o1[x] = hole ? fill[1] : lut[p[1]];
        o2[x] = hole ? fill[2] : lut[p[2]];
      }
      // The padding is context, never hole, even where it mirrors hole pixels.
      if (o3) o3[x] = (hole && !pad_row && x < f.w) ? one : zero;
    }
  }
}

template <class Load>
void composite_impl(const CompositeArgs& a, Load load) {
  const Frame& f = a.f;
  const int64_t plane = a.Hp * a.Wp;
  const int64_t rows = f.n * f.h;

#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / f.h, y = r % f.h;
    const int64_t sy = f.top + y;
    const uint8_t* img = a.images + ((b * f.H + sy) * f.W + f.left) * 3;
    const uint8_t* msk = a.masks + (b * f.H + sy) * f.W + f.left;
    uint8_t* o = a.out + b * a.out_batch_stride + y * a.out_row_stride;
    const int64_t base = b * 3 * plane + y * a.Wp;
    for (int64_t x = 0; x < f.w; ++x) {
      if (msk[x]) {
        o[3 * x + 0] = to_byte(load(base + x));
        o[3 * x + 1] = to_byte(load(base + plane + x));
        o[3 * x + 2] = to_byte(load(base + 2 * plane + x));
      } else {
        // Copy through a temporary so that `out` may alias `images` (in-place compositing).
        const uint8_t p0 = img[3 * x], p1 = img[3 * x + 1], p2 = img[3 * x + 2];
        o[3 * x + 0] = p0;
        o[3 * x + 1] = p1;
        o[3 * x + 2] = p2;
      }
    }
  }
}

}  // namespace

void prepare_cpu(const PrepareArgs& a) {
  if (a.half)
    prepare_impl<F16>(a);
  else
    prepare_impl<F32>(a);
}

void composite_cpu(const CompositeArgs& a) {
  if (a.half) {
    const uint16_t* p = static_cast<const uint16_t*>(a.pred);
    composite_impl(a, [p](int64_t i) { return half_to_float(p[i]); });
  } else {
    const float* p = static_cast<const float*>(a.pred);
    composite_impl(a, [p](int64_t i) { return p[i]; });
  }
}

}  // namespace fastfill
