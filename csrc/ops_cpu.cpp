// CPU implementations: one pass over the pixels, rows split across OpenMP threads.
#include <vector>

#include "ops.h"
#include "pixel.h"

namespace fastfill {
namespace {

// Output values through tables: the same float(v) / 255 (and float16 rounding) as Direct<T> in
// pixel.h, computed once per call instead of once per pixel.
template <class T>
struct Table {
  T lut[256];
  T fill[3];
  T one_, zero_;
  explicit Table(const float mean[3]) {
    const Direct<T> d{mean};
    for (int v = 0; v < 256; ++v) lut[v] = d.from_byte(uint8_t(v));
    for (int c = 0; c < 3; ++c) fill[c] = d.hole(c);
    one_ = d.one();
    zero_ = d.zero();
  }
  T from_float(float v) const { return Direct<T>{nullptr}.from_float(v); }
  T from_byte(uint8_t v) const { return lut[v]; }
  T hole(int c) const { return fill[c]; }
  T one() const { return one_; }
  T zero() const { return zero_; }
};

template <class T>
void prepare_impl(const PrepareArgs& a) {
  const Frame& f = a.f;
  const int64_t C = a.mask_channel ? 4 : 3;
  const int64_t plane = a.Hp * a.Wp;
  const Table<T> table(a.mean);
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
    const int64_t fill_row = (b * f.h + sy - f.top) * f.w - f.left;  // + sx: the prefill's pixel
    T* o = out + b * C * plane + y * a.Wp;
    const bool pad_row = y >= f.h;
    for (int64_t x = 0; x < a.Wp; ++x) {
      const int64_t sx = colmap[x];
      prepare_pixel(o + x, plane, a.mask_channel, img + sx * 3, msk[sx] != 0,
                    a.fill ? a.fill + (fill_row + sx) * 3 : nullptr, !pad_row && x < f.w, table);
    }
  }
}

template <class T>
void composite_impl(const CompositeArgs& a) {
  const Frame& f = a.f;
  const int64_t plane = a.Hp * a.Wp;
  const int64_t rows = f.n * f.h;
  const T* pred = static_cast<const T*>(a.pred);

#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / f.h, y = r % f.h;
    const int64_t sy = f.top + y;
    const uint8_t* img = a.images + ((b * f.H + sy) * f.W + f.left) * 3;
    const uint8_t* msk = a.masks + (b * f.H + sy) * f.W + f.left;
    uint8_t* o = a.out + b * a.out_batch_stride + y * a.out_row_stride;
    const T* row = pred + b * 3 * plane + y * a.Wp;
    for (int64_t x = 0; x < f.w; ++x) {
      const T* px = row + x;
      composite_pixel(o + 3 * x, img + 3 * x, msk[x] != 0,
                      [px, plane](int k) { return to_float(px[k * plane]); });
    }
  }
}

}  // namespace

void prepare_cpu(const PrepareArgs& a) {
  if (a.half)
    prepare_impl<uint16_t>(a);
  else
    prepare_impl<float>(a);
}

void composite_cpu(const CompositeArgs& a) {
  if (a.half)
    composite_impl<uint16_t>(a);
  else
    composite_impl<float>(a);
}

// Each 4x4 block's mean, rounded half to even (OpenCV's INTER_AREA for an exact 4x reduction
// rounds so, and the motion estimate's reduced frames are compared with frames it made). One
// thread: the caller (video propagation) runs beside the decoder and the encoder.
void area_reduce4_cpu(const uint8_t* src, int64_t stride, int64_t h, int64_t w, uint8_t* dst) {
  const int64_t rh = h / 4, rw = w / 4;
  std::vector<uint16_t> rows(size_t(4 * rw));
  for (int64_t y = 0; y < rh; ++y) {
    const uint8_t* r0 = src + 4 * y * stride;
    uint16_t* acc = rows.data();
    for (int64_t x = 0; x < 4 * rw; ++x)  // (vectorised: four rows summed per column)
      acc[x] = uint16_t(r0[x] + r0[x + stride] + r0[x + 2 * stride] + r0[x + 3 * stride]);
    uint8_t* out = dst + y * rw;
    for (int64_t x = 0; x < rw; ++x) {
      const unsigned s = unsigned(acc[4 * x]) + acc[4 * x + 1] + acc[4 * x + 2] + acc[4 * x + 3];
      const unsigned q = s >> 4, rem = s & 15u;
      out[x] = uint8_t(q + ((rem > 8u) | ((rem == 8u) & q & 1u)));
    }
  }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define FF_YUV_ROW __attribute__((target_clones("avx2", "default"))) __attribute__((noinline))
#else
#define FF_YUV_ROW
#endif

// A row: each channel (luma term + chroma term) >> 16, clamped, into planar rows (which the
// compiler vectorises: 8 pixels an AVX2 step), then interleaved.
FF_YUV_ROW void yuv_row(const uint8_t* __restrict yr, int64_t w, int32_t gain, int32_t off,
                        const int32_t* __restrict r, const int32_t* __restrict g,
                        const int32_t* __restrict b, uint8_t* __restrict pr, uint8_t* __restrict pg,
                        uint8_t* __restrict pb, uint8_t* __restrict o) {
  for (int64_t j = 0; j < w; ++j) {
    const int32_t l = gain * (int32_t(yr[j]) - off) + (1 << 15);
    int32_t x = (l + r[j]) >> 16, y = (l + g[j]) >> 16, z = (l + b[j]) >> 16;
    x = x < 0 ? 0 : (x > 255 ? 255 : x);
    y = y < 0 ? 0 : (y > 255 ? 255 : y);
    z = z < 0 ? 0 : (z > 255 ? 255 : z);
    pr[j] = uint8_t(x);
    pg[j] = uint8_t(y);
    pb[j] = uint8_t(z);
  }
  for (int64_t j = 0; j < w; ++j) {
    o[3 * j] = pr[j];
    o[3 * j + 1] = pg[j];
    o[3 * j + 2] = pb[j];
  }
}

// A chroma row's three terms, at the chroma's own width.
FF_YUV_ROW void chroma_terms(const uint8_t* __restrict ur, const uint8_t* __restrict vr, int64_t cw,
                             int32_t mid, int32_t rv, int32_t gu, int32_t gv, int32_t bu,
                             int32_t* __restrict r, int32_t* __restrict g, int32_t* __restrict b) {
  for (int64_t k = 0; k < cw; ++k) {
    const int32_t cu = int32_t(ur[k]) - mid, cv = int32_t(vr[k]) - mid;
    r[k] = rv * cv;
    g[k] = -gu * cu - gv * cv;
    b[k] = bu * cu;
  }
}

// Each term `f` times (chroma subsampled across by f): written in runs, which the compiler
// vectorises for f = 2 (indexing by j >> 1 instead cost twice the rows' own time).
FF_YUV_ROW void expand2(const int32_t* __restrict rc, const int32_t* __restrict gc,
                        const int32_t* __restrict bc, int64_t cw, int32_t* __restrict r,
                        int32_t* __restrict g, int32_t* __restrict b) {
  for (int64_t k = 0; k < cw; ++k) {
    r[2 * k] = r[2 * k + 1] = rc[k];
    g[2 * k] = g[2 * k + 1] = gc[k];
    b[2 * k] = b[2 * k + 1] = bc[k];
  }
}

void expand4(const int32_t* rc, const int32_t* gc, const int32_t* bc, int64_t cw, int32_t* r,
             int32_t* g, int32_t* b) {
  for (int64_t k = 0; k < 4 * cw; ++k) {
    r[k] = rc[k >> 2];
    g[k] = gc[k >> 2];
    b[k] = bc[k >> 2];
  }
}

// Exact integer arithmetic, so the NumPy reference gives the same bytes. One thread (video reads
// frames beside the codecs).
void yuv_to_rgb_cpu(const uint8_t* y, int64_t ys, const uint8_t* u, int64_t us, const uint8_t* v,
                    int64_t vs, int64_t h, int64_t w, int sy, int sx, const int32_t coef[7],
                    uint8_t* out, int64_t os) {
  const int64_t cw = (w + (int64_t(1) << sx) - 1) >> sx;
  const size_t n = static_cast<size_t>(cw << sx);  // (a width not a multiple: one run past w)
  std::vector<int32_t> r(n), g(n), b(n), rc(static_cast<size_t>(cw)), gc(rc.size()), bc(rc.size());
  std::vector<uint8_t> planar(3 * static_cast<size_t>(w));
  int64_t chroma_row = -1;
  for (int64_t i = 0; i < h; ++i) {
    if ((i >> sy) != chroma_row) {  // (the row's chroma terms, once per chroma row)
      chroma_row = i >> sy;
      chroma_terms(u + chroma_row * us, v + chroma_row * vs, cw, coef[2], coef[3], coef[4], coef[5],
                   coef[6], sx ? rc.data() : r.data(), sx ? gc.data() : g.data(),
                   sx ? bc.data() : b.data());
      if (sx == 1) expand2(rc.data(), gc.data(), bc.data(), cw, r.data(), g.data(), b.data());
      if (sx == 2) expand4(rc.data(), gc.data(), bc.data(), cw, r.data(), g.data(), b.data());
    }
    uint8_t* pr = planar.data();
    yuv_row(y + i * ys, w, coef[0], coef[1], r.data(), g.data(), b.data(), pr, pr + w, pr + 2 * w,
            out + i * os);
  }
}

}  // namespace fastfill
