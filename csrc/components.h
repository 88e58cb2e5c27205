// Hole components of a window: 4-connected, in scan order (labels stable), with their bounding
// boxes; shared by the harmonic and the patch fill.
#pragma once
#include <cstdint>
#include <vector>

#include "ops.h"

namespace fastfill {

struct Component {
  int64_t y0, x0, y1, x1;  // bounding box in window coordinates, end exclusive
  int64_t size;
  int32_t label;
};

// Component labels over the bounding box of the window's hole pixels (-1 = known).
struct Labels {
  int64_t y0 = 0, x0 = 0, h = 0, w = 0;
  std::vector<int32_t> v;
  int32_t operator()(int64_t y, int64_t x) const { return v[size_t((y - y0) * w + (x - x0))]; }
  int32_t& at(int64_t y, int64_t x) { return v[size_t((y - y0) * w + (x - x0))]; }
  // The label at any window pixel: -1 outside the box (no hole there).
  int32_t get(int64_t y, int64_t x) const {
    return (y < y0 || y >= y0 + h || x < x0 || x >= x0 + w) ? -1 : (*this)(y, x);
  }
};

std::vector<Component> label_components(const uint8_t* mask, int64_t W, const Frame& f, Labels& lab);

}  // namespace fastfill
