// Video propagation's per-source arithmetic around OpenCV's warps: the ring's Lucas-Kanade step,
// and the ring check with the copy of what a source gives (fastfill/video/propagate.py). One
// call each instead of a dozen NumPy passes over the ring.
#pragma once
#include <cstdint>
#include <optional>
#include <utility>

namespace fastfill {

// A uint8 image of h rows, `rs` bytes apart, its pixels' bytes contiguous (1 or 3 channels).
struct Rows {
  uint8_t* p;
  int64_t rs;
  uint8_t* row(int64_t y) const { return p + y * rs; }
};

struct RingArgs {
  int64_t h, w;
  Rows cur;     // the frame's pixels (RGB): the ring's are its own
  Rows ring;    // known pixels around the hole that check a source
  Rows valid;   // the source's samples there: all bilinear taps known
  Rows warped;  // the source warped onto the rectangle (RGB)
  Rows todo;    // open hole pixels (cleared where given)
};

// The shift d (x, y) with warped(x + d) ~ frame(x) over the ring, or none (too little texture,
// or over a pixel).
std::optional<std::pair<double, double>> ring_shift(const RingArgs& a);

// 1: the source's pixels given (what is open and valid, the exposure offset added), 0: the ring
// refused it (mean absolute difference over `ring_error` once the offset is removed), -1: it
// gives nothing or sees fewer than `min_ring` ring pixels.
int ring_place(const RingArgs& a, int64_t min_ring, double ring_error);

// The open pixels (`todo`) a source gives: where its warped known map (`known`, h x w) is 255.
// Their count and bounding box (y0, x0, y1, x1; zeros when none).
int64_t given_box(Rows known, Rows todo, int64_t h, int64_t w, int64_t box[4]);

}  // namespace fastfill
