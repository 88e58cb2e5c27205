// Video propagation's per-source arithmetic (see propagate.h). The same results as the NumPy
// steps they replace: the grey is OpenCV's RGB2GRAY (15-bit fixed point), the offset a float32
// mean of exact integer differences, an offset added as OpenCV 5's cv2.add adds a float scalar
// to uint8 (the float sum rounded half to even, saturated); the shift and the check's mean error
// are summed in double (NumPy summed them in float32, in its own order: the same decisions but
// where a sum's last bits decide).
#include "propagate.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace fastfill {
namespace {

inline int gray_of(const uint8_t* p) { return (p[0] * 9798 + p[1] * 19235 + p[2] * 3735 + 16384) >> 15; }

}  // namespace

std::optional<std::pair<double, double>> ring_shift(const RingArgs& a) {
  // ring pixels whose four neighbours are valid samples, none across the rectangle's edge
  std::vector<int64_t> sel;
  for (int64_t y = 1; y + 1 < a.h; ++y) {
    const uint8_t *ring = a.ring.row(y), *v = a.valid.row(y), *vu = a.valid.row(y - 1), *vd = a.valid.row(y + 1);
    for (int64_t x = 1; x + 1 < a.w; ++x)
      if (ring[x] && v[x] && v[x - 1] && v[x + 1] && vu[x] && vd[x]) sel.push_back(y * a.w + x);
  }
  if (sel.size() < 32) return std::nullopt;
  auto g = [&](int64_t y, int64_t x) { return double(gray_of(a.warped.row(y) + 3 * x)); };
  double mean = 0.0;
  for (const int64_t i : sel) {
    const int64_t y = i / a.w, x = i % a.w;
    mean += double(gray_of(a.cur.row(y) + 3 * x)) - g(y, x);
  }
  mean /= double(sel.size());  // (an exposure offset is not a shift)
  double axx = 0, axy = 0, ayy = 0, bx = 0, by = 0;
  for (const int64_t i : sel) {
    const int64_t y = i / a.w, x = i % a.w;
    const double gx = 0.5 * (g(y, x + 1) - g(y, x - 1)), gy = 0.5 * (g(y + 1, x) - g(y - 1, x));
    const double r = double(gray_of(a.cur.row(y) + 3 * x)) - g(y, x) - mean;
    axx += gx * gx;
    axy += gx * gy;
    ayy += gy * gy;
    bx += gx * r;
    by += gy * r;
  }
  // the smaller eigenvalue: flat or one-directional texture cannot say
  const double lmin = 0.5 * (axx + ayy) - std::sqrt(0.25 * (axx - ayy) * (axx - ayy) + axy * axy);
  const double det = axx * ayy - axy * axy;
  if (lmin < 4.0 * double(sel.size()) || det == 0.0) return std::nullopt;
  const double dx = (ayy * bx - axy * by) / det, dy = (axx * by - axy * bx) / det;
  if (!(std::abs(dx) <= 1.0 && std::abs(dy) <= 1.0)) return std::nullopt;
  return std::make_pair(dx, dy);
}

int ring_place(const RingArgs& a, int64_t min_ring, double ring_error) {
  bool any = false;
  int64_t seen = 0, sum[3] = {0, 0, 0};
  for (int64_t y = 0; y < a.h; ++y) {
    const uint8_t *ring = a.ring.row(y), *v = a.valid.row(y), *todo = a.todo.row(y);
    const uint8_t *cur = a.cur.row(y), *wp = a.warped.row(y);
    for (int64_t x = 0; x < a.w; ++x) {
      if (!v[x]) continue;
      any = any || todo[x];
      if (!ring[x]) continue;
      ++seen;
      for (int c = 0; c < 3; ++c) sum[c] += int64_t(cur[3 * x + c]) - wp[3 * x + c];
    }
  }
  if (!any || seen < std::max<int64_t>(min_ring, 1)) return -1;
  // an exposure change between the frames, not misalignment (float32, as NumPy's mean: the sum
  // is exact, one rounding in the division)
  float offset[3];
  for (int c = 0; c < 3; ++c) offset[c] = float(sum[c]) / float(seen);
  double err = 0.0;
  for (int64_t y = 0; y < a.h; ++y) {
    const uint8_t *ring = a.ring.row(y), *v = a.valid.row(y), *cur = a.cur.row(y), *wp = a.warped.row(y);
    for (int64_t x = 0; x < a.w; ++x)
      if (v[x] && ring[x])
        for (int c = 0; c < 3; ++c) {
          const float d = float(int(cur[3 * x + c]) - int(wp[3 * x + c]));
          err += std::abs(double(d - offset[c]));  // (d - offset rounded to float32, as NumPy)
        }
  }
  if (err / double(3 * seen) > ring_error) return 0;
  const bool add = std::max({std::abs(offset[0]), std::abs(offset[1]), std::abs(offset[2])}) >= 0.5f;
  for (int64_t y = 0; y < a.h; ++y) {
    const uint8_t *v = a.valid.row(y), *wp = a.warped.row(y);
    uint8_t *todo = a.todo.row(y), *cur = a.cur.row(y);
    for (int64_t x = 0; x < a.w; ++x) {
      if (!(v[x] && todo[x])) continue;
      for (int c = 0; c < 3; ++c) {
        const double s = double(wp[3 * x + c]) + (add ? double(offset[c]) : 0.0);
        cur[3 * x + c] = uint8_t(std::clamp(std::nearbyint(s), 0.0, 255.0));
      }
      todo[x] = 0;
    }
  }
  return 1;
}

int64_t given_box(Rows known, Rows todo, int64_t h, int64_t w, int64_t box[4]) {
  int64_t n = 0, y0 = h, x0 = w, y1 = 0, x1 = 0;
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t *k = known.row(y), *t = todo.row(y);
    int64_t first = -1, last = -1, count = 0;
    for (int64_t x = 0; x < w; ++x) {
      const bool g = t[x] && k[x] == 255;
      count += g;
      if (g) {
        if (first < 0) first = x;
        last = x;
      }
    }
    if (!count) continue;
    n += count;
    y0 = std::min(y0, y);
    y1 = y + 1;
    x0 = std::min(x0, first);
    x1 = std::max(x1, last + 1);
  }
  if (!n) y0 = x0 = y1 = x1 = 0;
  box[0] = y0, box[1] = x0, box[2] = y1, box[3] = x1;
  return n;
}

}  // namespace fastfill
