// Hole components of a window (see components.h).
#include "components.h"

#include <algorithm>
#include <cstring>

namespace fastfill {

// 4-connected components of the hole pixels in the window (scan order, so labels are stable).
std::vector<Component> label_components(const uint8_t* mask, int64_t W, const Frame& f, Labels& lab) {
  // Bounding box of the hole first: labels are then stored for it alone, not the whole frame.
  int64_t y0 = f.h, y1 = 0, x0 = f.w, x1 = 0;
  for (int64_t y = 0; y < f.h; ++y) {
    const uint8_t* row = mask + (f.top + y) * W + f.left;
    // Most rows hold no hole: test 8 bytes at a time, then look for the ends.
    int64_t x = 0;
    for (; x + 8 <= f.w; x += 8) {
      uint64_t word;
      std::memcpy(&word, row + x, 8);
      if (word) break;
    }
    while (x < f.w && !row[x]) ++x;
    if (x >= f.w) continue;
    const int64_t first = x;
    int64_t last = f.w - 1;
    while (!row[last]) --last;
    y0 = std::min(y0, y);
    y1 = y + 1;
    x0 = std::min(x0, first);
    x1 = std::max(x1, last + 1);
  }
  std::vector<Component> comps;
  if (y1 <= y0) return comps;
  lab.y0 = y0;
  lab.x0 = x0;
  lab.h = y1 - y0;
  lab.w = x1 - x0;
  lab.v.assign(size_t(lab.h * lab.w), -1);
  auto hole = [&](int64_t y, int64_t x) { return mask[(f.top + y) * W + f.left + x] != 0; };
  std::vector<int64_t> stack;
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) {
      if (lab(y, x) >= 0 || !hole(y, x)) continue;
      Component c{y, x, y + 1, x + 1, 0, int32_t(comps.size())};
      lab.at(y, x) = c.label;
      stack.push_back(y * f.w + x);
      while (!stack.empty()) {
        const int64_t k = stack.back();
        stack.pop_back();
        const int64_t cy = k / f.w, cx = k % f.w;
        ++c.size;
        c.y0 = std::min(c.y0, cy);
        c.y1 = std::max(c.y1, cy + 1);
        c.x0 = std::min(c.x0, cx);
        c.x1 = std::max(c.x1, cx + 1);
        const int64_t ny[4] = {cy, cy, cy - 1, cy + 1}, nx[4] = {cx - 1, cx + 1, cx, cx};
        for (int j = 0; j < 4; ++j) {
          if (ny[j] < y0 || ny[j] >= y1 || nx[j] < x0 || nx[j] >= x1) continue;
          if (lab(ny[j], nx[j]) >= 0 || !hole(ny[j], nx[j])) continue;
          lab.at(ny[j], nx[j]) = c.label;
          stack.push_back(ny[j] * f.w + nx[j]);
        }
      }
      comps.push_back(c);
    }
  return comps;
}

}  // namespace fastfill
