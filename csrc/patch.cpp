// Patch fill: multi-scale PatchMatch completion (Barnes et al. 2009, nearest-neighbour fields by
// propagation and random search) inside an expectation-maximisation loop with patch voting
// (Wexler et al. 2007), coarse to fine, started from the harmonic fill.
//
// Each 4-connected hole component is completed on its own, in its box: the component's bounding
// box grown by the search radius, clipped to the window. Everything the component's result reads
// lies in that box (the known pixels as patch sources, the harmonic fill of the hole pixels as the
// start), and every random draw is a hash of the seed and a position in the box, so the result of
// a component does not depend on the window around it (ROI crops equal the whole frame) nor on the
// thread count.
//
// Exact arithmetic, so that a slow NumPy transcription (ops.patch_reference) gives the same bytes:
// pixel values are integers (4 steps per uint8 level), patch distances are integer sums of squares
// (any order gives the same sum), the propagation is Jacobi (every target reads the field of the
// previous pass, not its neighbours' updates), and the vote is a double sum taken in one fixed
// order per pixel (this file is built without floating-point contraction).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "components.h"
#include "ops.h"
#include "pixel.h"

namespace fastfill {
namespace {

constexpr int32_t kScale = 4;            // value steps per uint8 level
constexpr int32_t kMax = 255 * kScale;   // 1020
// Vote weight of a patch: 1 / (1 + msd / sigma^2), msd its mean squared difference per value in
// uint8 levels^2; sigma = 8 levels (a patch off by 8 levels rms counts half).
constexpr double kSigma2 = 64.0;
// Targets from which a component runs alone with its level loops split across the threads
// (smaller ones run side by side, one thread each).
constexpr int64_t kParallelTargets = 4096;
// Targets from which a level of such a component splits: its coarse levels (a quarter, a
// sixteenth of its targets) are worth splitting too. Measured on a 1080p frame against 4096: a
// logo-sized hole 8 % and a 128² one 5 % faster at 256-1,024 (the same within noise), slower
// again at 128 and less (a parallel region's start costs more than a small level's work).
constexpr int64_t kSplitTargets = 512;
// Random search below the coarsest level: windows from this radius down, around the carried
// source (the coarsest level searches its whole box; one draw anywhere stays at every level).
// Measured on the validation photos: the same PSNR and texture as the whole box, 1.3x faster.
constexpr int64_t kReach = 8;
// How far from a carried source that is no longer one its replacement is looked for (see carry_over).
constexpr int64_t kNear = 8;
// The pass id of the completeness search's random start (its passes take the next ones; ids of
// the coherence passes are below 2^56).
constexpr uint64_t kCompleteStart = 0xC0ull << 56;
// The blend's prior support, percent of a window wholly in the hole (blend_low_frequencies).
// Measured (20 against 0): better on both axes in every setting, on the validation photos and on
// 98 others; 40 and more trade PSNR for texture.
constexpr int64_t kBlendPrior = 20;
// The gradient rebuild's weight of a seam (two hole pixels copied from sources that are not
// neighbours), in eighths: measured 1/8 against 1 (no seam weighting): better on both axes in
// every setting (gradient_rebuild).
constexpr int64_t kSeamEighths = 1;
// Across a seam, two sources' differences this close (value steps: 24 levels) agree, and their
// mean is the link's; further apart, the median of both and the voted difference. Measured: the
// median alone on a noisy ramp took, at every seam, the source nearer the copies' offset (a
// corner hole 2 dB worse than one source's); the mean where they agree mends that, and a
// brick's mortar edge (30-150 levels) is still told from a flat brick's zero.
constexpr int64_t kSeamAgree = 24 * kScale;

inline uint64_t mix(uint64_t z) {  // splitmix64's finaliser
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The random number for draw `k` of position `pos` in pass `pass` (see patch_reference).
inline uint64_t draw(uint64_t seed, uint64_t pass, uint64_t pos, uint64_t k) {
  return mix(mix(mix(seed ^ pass) ^ pos) ^ k);
}

// A random offset in [-rad, rad] each way from draw z: its two 32-bit halves scaled to
// [0, 2 rad + 1) (dy from the low half, dx from the high one).
inline std::array<int64_t, 2> offset_of(uint64_t z, int64_t rad) {
  const uint64_t span = uint64_t(2 * rad + 1);
  return {int64_t(((z & 0xffffffffu) * span) >> 32) - rad, int64_t(((z >> 32) * span) >> 32) - rad};
}

// One level of a component's pyramid over its box (h x w cells).
struct Level {
  int64_t h = 0, w = 0;
  std::vector<int16_t> v;      // h * w pixels of 4 values (r, g, b in [0, kMax], 0)
  std::vector<uint8_t> hole;   // any hole pixel (of any component) below the cell
  std::vector<uint8_t> mine;   // a pixel of this component below the cell
  std::vector<uint8_t> valid;  // a source centre: the patch lies in the box and holds no hole
  std::vector<int32_t> src;    // the valid centres, in scan order
  std::vector<int32_t> tid;    // target index of each centre, -1 = not a target
  std::vector<int32_t> targets;  // target centres (patch in the box, holding a pixel of mine)
  // source centre (y, x) of each target (two buffers: a pass reads one and writes the other)
  std::vector<int32_t> sy, sx, sy2, sx2;
  std::vector<int32_t> dist, dist2;
  // the completeness votes' sources (centres within one patch side of the component), the
  // target each matches best so far and its distance, and the searches made (see completeness)
  std::vector<int32_t> band, bt, bd;
  int64_t band_passes = -1;  // -1: not yet made
  std::vector<int32_t> bsrc;  // the source pixel each pixel took in the last best-patch vote (-1)
};

// Sum over each p x p window: out[y * w + x] for the window centred at (y, x), -1 where the
// window leaves the box.
std::vector<int32_t> window_sums(const std::vector<uint8_t>& m, int64_t h, int64_t w, int r) {
  std::vector<int32_t> I(size_t((h + 1) * (w + 1)), 0);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      I[size_t((y + 1) * (w + 1) + x + 1)] = m[size_t(y * w + x)] + I[size_t(y * (w + 1) + x + 1)] +
                                             I[size_t((y + 1) * (w + 1) + x)] - I[size_t(y * (w + 1) + x)];
  std::vector<int32_t> out(size_t(h * w), -1);
  for (int64_t y = r; y + r < h; ++y)
    for (int64_t x = r; x + r < w; ++x) {
      const int64_t a = y - r, b = x - r, c = y + r + 1, d = x + r + 1;
      out[size_t(y * w + x)] = I[size_t(c * (w + 1) + d)] - I[size_t(a * (w + 1) + d)] -
                               I[size_t(c * (w + 1) + b)] + I[size_t(a * (w + 1) + b)];
    }
  return out;
}

// Rings inwards over an h x w grid whose cells are kBlocked, kValued or kOpen: the first ring is
// the open cells next to (4- or, with `eight`, 8-connected) a valued one, each next ring the open
// cells next to the ring before; `visit(ring)` is called on each ring in turn, after which its
// cells count as valued. Open cells no ring reaches are never visited. The order within a ring is
// the order of discovery: a visit reads the rings before, never its own, so it does not matter.
enum Ring : uint8_t { kBlocked = 0, kValued = 1, kOpen = 2 };
template <typename Visit>  // Visit: void(const std::vector<int32_t>& ring)
void inward_rings(std::vector<uint8_t> state, int64_t h, int64_t w, bool eight, Visit&& visit) {
  std::vector<int32_t> ring, next;
  auto neighbours = [&](int64_t i, auto&& f) {
    const int64_t y = i / w, x = i % w;
    for (int64_t yy = std::max<int64_t>(0, y - 1); yy <= std::min(h - 1, y + 1); ++yy)
      for (int64_t xx = std::max<int64_t>(0, x - 1); xx <= std::min(w - 1, x + 1); ++xx)
        if ((yy != y || xx != x) && (eight || yy == y || xx == x)) f(yy * w + xx);
  };
  for (int64_t i = 0; i < h * w; ++i) {
    if (state[size_t(i)] != kOpen) continue;
    bool near = false;
    neighbours(i, [&](int64_t j) { near = near || state[size_t(j)] == kValued; });
    if (near) ring.push_back(int32_t(i));
  }
  for (int32_t i : ring) state[size_t(i)] = kBlocked;  // (found: not found again)
  while (!ring.empty()) {
    visit(static_cast<const std::vector<int32_t>&>(ring));
    next.clear();
    for (int32_t i : ring)
      neighbours(i, [&](int64_t j) {
        if (state[size_t(j)] == kOpen) {
          state[size_t(j)] = kBlocked;
          next.push_back(int32_t(j));
        }
      });
    ring.swap(next);
  }
}

// Patch distances: rows of p pixels of 4 int16 values (the 4th is 0), squared differences summed
// in int32 (at most 15 * 15 * 3 * 1020^2 < 2^31). Compiled for a fixed row length per patch side
// so the row loop vectorises, twice on x86-64 Linux (AVX2 and the baseline; the loader picks).
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define FF_SSD_KERNEL __attribute__((target_clones("avx2", "default"))) __attribute__((noinline))
#else
#define FF_SSD_KERNEL
#endif
using Ssd = int32_t (*)(const int16_t*, const int16_t*, int64_t, int32_t);

template <int P>
inline __attribute__((always_inline)) int32_t ssd_rows(const int16_t* a, const int16_t* b, int64_t stride,
                                                       int32_t bound) {
  int32_t acc = 0;
  for (int dy = 0; dy < P; ++dy) {
    const int16_t* __restrict ra = a + dy * stride;
    const int16_t* __restrict rb = b + dy * stride;
    int32_t row = 0;
    for (int k = 0; k < 4 * P; ++k) {
      // int16 differences (|e| <= 1020) squared and summed pairwise: the multiply-add of int16s
      const int16_t e = int16_t(ra[k] - rb[k]);
      row += int32_t(e) * int32_t(e);
    }
    acc += row;
    if (acc >= bound) return acc;
  }
  return acc;
}

#define FF_SSD(P) \
  FF_SSD_KERNEL int32_t ssd##P(const int16_t* a, const int16_t* b, int64_t s, int32_t bound) { \
    return ssd_rows<P>(a, b, s, bound);                                                      \
  }
FF_SSD(3)
FF_SSD(5)
FF_SSD(7)
FF_SSD(9)
FF_SSD(11)
FF_SSD(13)
FF_SSD(15)
#undef FF_SSD

Ssd ssd_kernel(int p) {
  switch (p) {
    case 3: return ssd3;
    case 5: return ssd5;
    case 7: return ssd7;
    case 9: return ssd9;
    case 11: return ssd11;
    case 13: return ssd13;
    default: return ssd15;  // the bindings allow odd sides 3..15 only
  }
}

// The onion peel's patch distance: the squared differences (four values each) between the cells
// `val` (`rows` rows, ending at `row_end`) and those at offsets `off` from `b`, summed in int32
// (at most 15 * 15 * 4 * 1020^2 < 2^31); stops after the row where the sum reaches `bound`.
constexpr int kMaxSide = 15, kMaxCells = kMaxSide * kMaxSide;
inline int32_t onion_distance(const int16_t* b, const int32_t* off, const int16_t* val,
                              const int* row_end, int rows, int32_t bound) {
  int32_t sum = 0;
  int e = 0;
#if defined(__SSE2__)
  for (int row = 0; row < rows; ++row) {
    __m128i acc = _mm_setzero_si128();
    for (; e + 1 < row_end[row]; e += 2) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(val + 4 * e));
      const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 4 * int64_t(off[e])));
      const __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 4 * int64_t(off[e + 1])));
      const __m128i d = _mm_sub_epi16(a, _mm_unpacklo_epi64(lo, hi));
      acc = _mm_add_epi32(acc, _mm_madd_epi16(d, d));
    }
    if (e < row_end[row]) {
      const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(val + 4 * e));
      const __m128i bb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 4 * int64_t(off[e])));
      const __m128i d = _mm_sub_epi16(a, bb);
      acc = _mm_add_epi32(acc, _mm_madd_epi16(d, d));
      ++e;
    }
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(1, 0, 3, 2)));
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(2, 3, 0, 1)));
    sum += _mm_cvtsi128_si32(acc);
    if (sum >= bound) return sum;
  }
#else
  for (int row = 0; row < rows; ++row) {
    for (; e < row_end[row]; ++e) {
      const int16_t* a = val + 4 * e;
      const int16_t* c = b + 4 * int64_t(off[e]);
      for (int ch = 0; ch < 4; ++ch) {
        const int32_t d = int32_t(a[ch]) - c[ch];
        sum += d * d;
      }
    }
    if (sum >= bound) return sum;
  }
#endif
  return sum;
}

class Completion {
 public:
  Completion(const PatchParams& P, int64_t parallel_targets)
      : P_(P), r_(P.patch / 2), par_min_(parallel_targets), ssd_(ssd_kernel(P.patch)) {}

  // Sources and targets of level L from its masks; false when it has no source.
  bool index(Level& L) const {
    const int64_t n = L.h * L.w;
    const std::vector<int32_t> holes = window_sums(L.hole, L.h, L.w, r_);
    const std::vector<int32_t> mine = window_sums(L.mine, L.h, L.w, r_);
    L.valid.assign(size_t(n), 0);
    L.src.clear();
    L.targets.clear();
    L.tid.assign(size_t(n), -1);
    for (int64_t i = 0; i < n; ++i) {
      if (holes[size_t(i)] == 0) {
        L.valid[size_t(i)] = 1;
        L.src.push_back(int32_t(i));
      }
      if (mine[size_t(i)] > 0) {
        L.tid[size_t(i)] = int32_t(L.targets.size());
        L.targets.push_back(int32_t(i));
      }
    }
    return !L.src.empty() && !L.targets.empty();
  }

  // Sum of squared differences of the patches centred at t and s; stops (returning a value
  // >= bound) once the partial sum reaches `bound`.
  int32_t distance(const Level& L, int64_t t, int64_t s, int32_t bound) const {
    const int64_t off = (int64_t(r_) * L.w + r_) * 4;
    return ssd_(L.v.data() + t * 4 - off, L.v.data() + s * 4 - off, L.w * 4, bound);
  }

  // Onion peel (the start of a level): the component's cells, ring by ring from the known
  // pixels inwards (a ring: the cells next to, 8-connected, a known or already filled one), each
  // take the centre of the source whose patch is closest to theirs over its known and filled
  // cells (all four values; the first in scan order among equals). A ring reads only the rings
  // before it. The structure around the hole continues into it, where a smooth start (or a
  // coarser level's) would match smooth sources of the same mean colour (Criminisi et al.'s
  // exemplar fill as a start, as in Newson et al.'s multi-scale completion).
  void onion(Level& L) const {
    const int64_t n = L.h * L.w, w = L.w;
    std::vector<uint8_t> state(static_cast<size_t>(n), kBlocked);  // (another component's hole)
    std::vector<uint8_t> done(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < n; ++i) {
      done[size_t(i)] = !L.hole[size_t(i)];
      if (done[size_t(i)]) state[size_t(i)] = kValued;
      else if (L.mine[size_t(i)]) state[size_t(i)] = kOpen;
    }
    // the source each peeled cell took (its neighbours' first guess), -1 elsewhere
    std::vector<int32_t> took(static_cast<size_t>(n), -1);
    std::vector<int16_t> value;
    std::vector<int32_t> chosen;
    const int64_t ns = int64_t(L.src.size()), h = L.h;
    // (the component's cells no ring reaches, cut off from every known cell, keep their start)
    inward_rings(std::move(state), L.h, L.w, true, [&](const std::vector<int32_t>& ring) {
      const int64_t nr = int64_t(ring.size());
      value.assign(size_t(3 * nr), 0);
      chosen.assign(size_t(nr), -1);
#pragma omp parallel for schedule(dynamic, 4) if (nr * ns >= kParallelTargets * 16)
      for (int64_t k = 0; k < nr; ++k) {
        const int64_t t = ring[size_t(k)], ty = t / w, tx = t % w;
        // the patch's known and filled cells, row by row: offsets from the centre and values
        // (a source's patch lies in the box: no bounds to check in the search below)
        int32_t off[kMaxCells];
        int16_t val[4 * kMaxCells];
        int row_end[kMaxSide];
        int cells = 0, rows = 0;
        for (int dy = -r_; dy <= r_; ++dy) {
          const int64_t yy = ty + dy;
          if (yy < 0 || yy >= h) continue;
          for (int dx = -r_; dx <= r_; ++dx) {
            const int64_t xx = tx + dx;
            if (xx < 0 || xx >= w || !done[size_t(yy * w + xx)]) continue;
            off[cells] = int32_t(dy * w + dx);
            std::memcpy(&val[4 * cells], &L.v[size_t((yy * w + xx) * 4)], 4 * sizeof(int16_t));
            ++cells;
          }
          if (rows == 0 || row_end[rows - 1] != cells) row_end[rows++] = cells;
        }
        // a bound from the sources the peeled neighbours took, moved by the step to here: the
        // search then drops most sources after a row or two, and still returns the first in
        // scan order among the closest (every source at the bound's distance or under is seen)
        int32_t best = INT32_MAX;
        for (int64_t yy = std::max<int64_t>(0, ty - 1); yy <= std::min(h - 1, ty + 1); ++yy)
          for (int64_t xx = std::max<int64_t>(0, tx - 1); xx <= std::min(w - 1, tx + 1); ++xx) {
            const int32_t sn = took[size_t(yy * w + xx)];
            if (sn < 0) continue;
            const int64_t s = sn + (ty - yy) * w + (tx - xx);
            if (s < 0 || s >= n || !L.valid[size_t(s)]) continue;
            const int32_t d = onion_distance(L.v.data() + s * 4, off, val, row_end, rows, INT32_MAX);
            if (d < best) best = d + 1;  // (strictly under: the candidate itself is found again)
          }
        int64_t bs = t;
        for (int64_t j = 0; j < ns; ++j) {
          const int64_t s = L.src[size_t(j)];
          const int32_t sum = onion_distance(L.v.data() + s * 4, off, val, row_end, rows, best);
          if (sum < best) {
            best = sum;
            bs = s;
          }
        }
        for (int ch = 0; ch < 3; ++ch) value[size_t(3 * k + ch)] = L.v[size_t(bs * 4 + ch)];
        chosen[size_t(k)] = bs == t ? -1 : int32_t(bs);
      }
      for (int64_t k = 0; k < nr; ++k) {
        const int64_t t = ring[size_t(k)];
        for (int ch = 0; ch < 3; ++ch) L.v[size_t(t * 4 + ch)] = value[size_t(3 * k + ch)];
        done[size_t(t)] = 1;
        took[size_t(t)] = chosen[size_t(k)];
      }
    });
  }

  // Whether level L starts from an onion peel: its component cells times its sources (the peel's
  // work) at most `onion`.
  bool peels(const Level& L) const {
    int64_t cells = 0;
    for (uint8_t m : L.mine) cells += m;
    return P_.onion > 0 && double(cells) * double(L.src.size()) <= double(P_.onion);
  }

  bool parallel(const Level& L) const { return int64_t(L.targets.size()) >= par_min_; }

  // The mean over the targets of the colours' part of their patch distance to their sources
  // (summed in target order): what a carried field's fit is judged by. Not the textureness
  // channel: it asks the same of the hole in every frame, so it says nothing of a cut, and it would
  // raise every frame's distance alike (the cut's rise becoming the smaller part).
  double colour_mean(const Level& L) const {
    const int64_t nt = int64_t(L.targets.size()), w = L.w;
    if (nt == 0) return 0.0;
    double sum = 0.0;
    for (int64_t k = 0; k < nt; ++k) {
      const int64_t t = L.targets[size_t(k)], s = int64_t(L.sy[size_t(k)]) * w + L.sx[size_t(k)];
      int64_t d = 0;
      for (int dy = -r_; dy <= r_; ++dy)
        for (int dx = -r_; dx <= r_; ++dx) {
          const int16_t* a = &L.v[size_t((t + dy * w + dx) * 4)];
          const int16_t* b = &L.v[size_t((s + dy * w + dx) * 4)];
          for (int ch = 0; ch < 3; ++ch) {
            const int64_t e = int64_t(a[ch]) - b[ch];
            d += e * e;
          }
        }
      sum += double(d);
    }
    return sum / double(nt);
  }

  // dist of every target for its current source.
  void measure(Level& L) const {
    const int64_t nt = int64_t(L.targets.size());
#pragma omp parallel for schedule(static) if (parallel(L))
    for (int64_t k = 0; k < nt; ++k)
      L.dist[size_t(k)] = distance(L, L.targets[size_t(k)], int64_t(L.sy[size_t(k)]) * L.w + L.sx[size_t(k)], INT32_MAX);
  }

  // One PatchMatch pass: each target tries its neighbours' sources shifted back (at steps 1 and
  // `jump`), then random sources around its best in windows halving from `reach`, then one
  // anywhere; the best strictly better one wins. Reads nnf/dist, writes nnf2/dist2, swaps.
  void pass(Level& L, uint64_t pass_id, int64_t jump, int64_t reach) const {
    const int64_t nt = int64_t(L.targets.size()), w = L.w, h = L.h;
    const int64_t steps[2] = {1, jump};
    const int nsteps = jump > 1 ? 2 : 1;
    const int64_t ns = int64_t(L.src.size());
    const uint64_t pass_mix = mix(P_.seed ^ pass_id);
#pragma omp parallel for schedule(static) if (parallel(L))
    for (int64_t k = 0; k < nt; ++k) {
      const int64_t t = L.targets[size_t(k)], ty = t / w, tx = t % w;
      int64_t by = L.sy[size_t(k)], bx = L.sx[size_t(k)];
      int32_t bd = L.dist[size_t(k)];
      auto tryit = [&](int64_t y, int64_t x) {
        const int64_t s = y * w + x;
        if ((y == by && x == bx) || !L.valid[size_t(s)]) return;
        const int32_t d = distance(L, t, s, bd);
        if (d < bd) {
          bd = d;
          by = y;
          bx = x;
        }
      };
      for (int j = 0; j < nsteps; ++j) {
        const int64_t st = steps[j];
        const int64_t ny[4] = {ty - st, ty + st, ty, ty}, nx[4] = {tx, tx, tx - st, tx + st};
        for (int q = 0; q < 4; ++q) {
          if (ny[q] < 0 || ny[q] >= h || nx[q] < 0 || nx[q] >= w) continue;
          const int32_t nk = L.tid[size_t(ny[q] * w + nx[q])];
          if (nk < 0) continue;
          const int64_t sy = L.sy[size_t(nk)] + (ty - ny[q]), sx = L.sx[size_t(nk)] + (tx - nx[q]);
          if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
          tryit(sy, sx);
        }
      }
      uint64_t kdraw = 0;
      const uint64_t stream = mix(pass_mix ^ uint64_t(t));  // draw(seed, pass_id, t, k) = mix(stream ^ k)
      for (int64_t rad = reach; rad >= 1; rad /= 2) {
        const uint64_t z = mix(stream ^ kdraw++);
        const auto [dy, dx] = offset_of(z, rad);
        const int64_t sy = by + dy, sx = bx + dx;
        if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
        tryit(sy, sx);
      }
      const int64_t any = L.src[size_t(mix(stream ^ kdraw) % uint64_t(ns))];
      tryit(any / w, any % w);
      L.sy2[size_t(k)] = int32_t(by);
      L.sx2[size_t(k)] = int32_t(bx);
      L.dist2[size_t(k)] = bd;
    }
    L.sy.swap(L.sy2);
    L.sx.swap(L.sx2);
    L.dist.swap(L.dist2);
  }

  // Completeness votes (after Simakov et al.'s bidirectional similarity, over the known patches
  // around the hole only): each source patch whose centre lies within one patch side of a pixel
  // of the component keeps the target patch closest to it (PatchMatch the other way round, from
  // a random start at the level's first vote; each vote measures the kept targets again on the
  // current image and makes one Jacobi pass: propagation from the 4 neighbours, then a random
  // search over the box) and votes its pixels there with weight (complete / 100) / (1 + msd /
  // sigma^2), summed offset by offset, sources in scan order. Without them the coherence votes
  // alone settle on the smoothest sources that fit (a star field's empty sky, not its stars).
  void completeness(Level& L, double kinv, std::vector<double>& cacc, std::vector<double>& cw) const {
    const int64_t n = L.h * L.w, w = L.w, h = L.h;
    const int64_t nt = int64_t(L.targets.size());
    const bool first = L.band_passes < 0;
    if (first) {
      const std::vector<int32_t> near = window_sums(L.mine, h, w, P_.patch);
      L.band.clear();
      for (const int32_t s : L.src)
        if (near[size_t(s)] > 0) L.band.push_back(s);
      L.bt.assign(L.band.size(), 0);
      L.bd.assign(L.band.size(), 0);
      L.band_passes = 0;
    }
    const int64_t nb = int64_t(L.band.size());
    if (nb == 0 || nt == 0) return;
    const bool par = nb >= par_min_;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < nb; ++k) {
      if (first) {
        const uint64_t z = draw(P_.seed, kCompleteStart, uint64_t(L.band[size_t(k)]), 0);
        L.bt[size_t(k)] = L.targets[size_t(z % uint64_t(nt))];
      }
      L.bd[size_t(k)] = distance(L, L.bt[size_t(k)], L.band[size_t(k)], INT32_MAX);
    }
    std::vector<int32_t> at(static_cast<size_t>(n), -1);  // band index of each source centre
    for (int64_t k = 0; k < nb; ++k) at[size_t(L.band[size_t(k)])] = int32_t(k);
    std::vector<int32_t> bt2(static_cast<size_t>(nb)), bd2(static_cast<size_t>(nb));
    const uint64_t pass_id = kCompleteStart + 1 + uint64_t(L.band_passes++);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < nb; ++k) {
      const int64_t s = L.band[size_t(k)], sy = s / w, sx = s % w;
      int64_t best = L.bt[size_t(k)];
      int32_t bd = L.bd[size_t(k)];
      auto tryit = [&](int64_t ty, int64_t tx) {
        if (ty < 0 || ty >= h || tx < 0 || tx >= w) return;
        const int64_t t = ty * w + tx;
        if (t == best || L.tid[size_t(t)] < 0) return;
        const int32_t d = distance(L, t, s, bd);
        if (d < bd) {
          bd = d;
          best = t;
        }
      };
      const int64_t ny[4] = {sy - 1, sy + 1, sy, sy}, nx[4] = {sx, sx, sx - 1, sx + 1};
      for (int q = 0; q < 4; ++q) {
        if (ny[q] < 0 || ny[q] >= h || nx[q] < 0 || nx[q] >= w) continue;
        const int32_t nk = at[size_t(ny[q] * w + nx[q])];
        if (nk < 0) continue;
        const int64_t t = L.bt[size_t(nk)];
        tryit(t / w + (sy - ny[q]), t % w + (sx - nx[q]));
      }
      uint64_t kdraw = 0;
      for (int64_t rad = std::max(h, w); rad >= 1; rad /= 2) {
        const uint64_t z = draw(P_.seed, pass_id, uint64_t(s), kdraw++);
        const auto [dy, dx] = offset_of(z, rad);
        tryit(best / w + dy, best % w + dx);
      }
      bt2[size_t(k)] = int32_t(best);
      bd2[size_t(k)] = bd;
    }
    L.bt.swap(bt2);
    L.bd.swap(bd2);
    const double lam = double(P_.complete) / 100.0;
    std::vector<double> wt(static_cast<size_t>(nb));
    for (int64_t k = 0; k < nb; ++k) wt[size_t(k)] = lam / (1.0 + double(L.bd[size_t(k)]) * kinv);
    cacc.assign(size_t(3 * n), 0.0);
    cw.assign(size_t(n), 0.0);
    for (int dy = -r_; dy <= r_; ++dy)
      for (int dx = -r_; dx <= r_; ++dx)
        for (int64_t k = 0; k < nb; ++k) {
          const int64_t i = int64_t(L.bt[size_t(k)]) + dy * w + dx, sj = int64_t(L.band[size_t(k)]) + dy * w + dx;
          if (!L.mine[size_t(i)]) continue;
          for (int ch = 0; ch < 3; ++ch) cacc[size_t(3 * i + ch)] += wt[size_t(k)] * double(L.v[size_t(sj * 4 + ch)]);
          cw[size_t(i)] += wt[size_t(k)];
        }
  }

  // Each pixel of the component: the weighted mean of what the patches covering it say, offsets
  // taken in one fixed order; weights 1 / (1 + msd / sigma^2). With `best`, what the closest of
  // those patches says (the first in that order among equals): no averaging, so no blur. Reads
  // only source pixels (known), so pixels can be written in place.
  void vote(Level& L, bool best) const {
    const int64_t n = L.h * L.w, w = L.w, h = L.h;
    const int p = P_.patch;
    const double kinv = 1.0 / (double(p * p * 3) * double(kScale * kScale) * kSigma2);
    std::vector<double> weight(L.targets.size());
    for (size_t k = 0; k < weight.size(); ++k) weight[k] = 1.0 / (1.0 + double(L.dist[k]) * kinv);
    std::vector<double> cacc, cw;  // the completeness votes (not for the best patch's vote)
    if (!best && P_.complete > 0) completeness(L, kinv, cacc, cw);
    std::vector<int32_t> pixels;
    for (int64_t i = 0; i < n; ++i)
      if (L.mine[size_t(i)]) pixels.push_back(int32_t(i));
    const int64_t np = int64_t(pixels.size());
    if (best) L.bsrc.assign(size_t(n), -1);
#pragma omp parallel for schedule(static) if (parallel(L))
    for (int64_t k = 0; k < np; ++k) {
      const int64_t i = pixels[size_t(k)], y = i / w, x = i % w;
      double acc[3] = {0.0, 0.0, 0.0}, ws = 0.0;
      int32_t bd = INT32_MAX;
      int64_t bs = -1;
      for (int dy = -r_; dy <= r_; ++dy)
        for (int dx = -r_; dx <= r_; ++dx) {
          const int64_t cy = y - dy, cx = x - dx;  // the patch centred there covers (y, x) at (dy, dx)
          if (cy < 0 || cy >= h || cx < 0 || cx >= w) continue;
          const int32_t tk = L.tid[size_t(cy * w + cx)];
          if (tk < 0) continue;
          const double wt = weight[size_t(tk)];
          const int64_t s = (int64_t(L.sy[size_t(tk)]) + dy) * w + L.sx[size_t(tk)] + dx;
          if (best) {  // the closest patch alone says the value
            if (L.dist[size_t(tk)] < bd) {
              bd = L.dist[size_t(tk)];
              bs = s;
              for (int ch = 0; ch < 3; ++ch) acc[ch] = double(L.v[size_t(s * 4 + ch)]);
              ws = 1.0;
            }
            continue;
          }
          for (int ch = 0; ch < 3; ++ch) acc[ch] += wt * double(L.v[size_t(s * 4 + ch)]);
          ws += wt;
        }
      if (!cw.empty()) {
        for (int ch = 0; ch < 3; ++ch) acc[ch] += cacc[size_t(3 * i + ch)];
        ws += cw[size_t(i)];
      }
      if (best) L.bsrc[size_t(i)] = int32_t(bs);
      if (!(ws > 0.0)) continue;
      for (int ch = 0; ch < 3; ++ch) {
        const double q = std::nearbyint(acc[ch] / ws);
        L.v[size_t(i * 4 + ch)] = int16_t(std::min(double(kMax), std::max(0.0, q)));
      }
    }
  }

  // EM at one level: rounds of (distances for the current image, PatchMatch passes, vote).
  void em(Level& L, int level, bool top) const {
    const int64_t reach = top ? std::max(L.h, L.w) : std::min(std::max(L.h, L.w), kReach);
    // Many cheap rounds at the coarse levels, where the structure is decided, few at the fine ones
    // (PyPatchMatch's schedule; measured: the quality of 3 rounds x 3 passes everywhere at a third
    // of the time).
    const int iters = 1 + P_.iterations * level;
    const int passes = std::min(P_.passes, 1 + level);
    for (int it = 0; it < iters; ++it) {
      measure(L);
      for (int pm = 0; pm < passes; ++pm) {
        const uint64_t id = (uint64_t(level) << 40) | (uint64_t(it) << 20) | uint64_t(pm);
        pass(L, id, int64_t(1) << (passes - 1 - pm), reach);
      }
      vote(L, level == 0 && it + 1 == iters);  // the last vote keeps the best patch's texture
    }
  }

  const PatchParams& P_;
  const int r_;
  const int64_t par_min_;
  const Ssd ssd_;
};

// The coarser level of F: a cell is the rounded mean of its known children (of all of them when
// none is known) and is hole only when all its children are, so the hole shrinks level by level
// and the coarse levels are mostly known context; it is the component's when it is hole and one
// of its children is the component's.
void downsample(const Level& F, Level& C) {
  C.h = (F.h + 1) / 2;
  C.w = (F.w + 1) / 2;
  const int64_t n = C.h * C.w;
  C.v.assign(size_t(4 * n), 0);
  C.hole.assign(size_t(n), 0);
  C.mine.assign(size_t(n), 0);
  for (int64_t Y = 0; Y < C.h; ++Y)
    for (int64_t X = 0; X < C.w; ++X) {
      int32_t sum[4] = {0, 0, 0, 0}, cnt = 0, ksum[4] = {0, 0, 0, 0}, kcnt = 0;
      uint8_t mine = 0, all = 1;
      for (int64_t y = 2 * Y; y < std::min(F.h, 2 * Y + 2); ++y)
        for (int64_t x = 2 * X; x < std::min(F.w, 2 * X + 2); ++x) {
          const int64_t i = y * F.w + x;
          for (int ch = 0; ch < 4; ++ch) sum[ch] += F.v[size_t(i * 4 + ch)];
          if (!F.hole[size_t(i)]) {
            for (int ch = 0; ch < 4; ++ch) ksum[ch] += F.v[size_t(i * 4 + ch)];
            ++kcnt;
          }
          all &= F.hole[size_t(i)];
          mine |= F.mine[size_t(i)];
          ++cnt;
        }
      const int64_t I = Y * C.w + X;
      if (kcnt > 0) {
        for (int ch = 0; ch < 4; ++ch) C.v[size_t(I * 4 + ch)] = int16_t((ksum[ch] + kcnt / 2) / kcnt);
      } else {
        for (int ch = 0; ch < 4; ++ch) C.v[size_t(I * 4 + ch)] = int16_t((sum[ch] + cnt / 2) / cnt);
      }
      C.hole[size_t(I)] = all;
      C.mine[size_t(I)] = all && mine;
    }
}

// Carry level C's result to the finer level F: its pixels take their parent's value, its targets
// their parent's source shifted by their place in the parent (or, where that is not a source, a
// random source).
void upsample(const Level& C, Level& F, uint64_t seed, int level) {
  for (int64_t y = 0; y < F.h; ++y)
    for (int64_t x = 0; x < F.w; ++x) {
      const int64_t i = y * F.w + x;
      if (!F.mine[size_t(i)]) continue;
      const int64_t I = (y / 2) * C.w + x / 2;
      for (int ch = 0; ch < 3; ++ch) F.v[size_t(i * 4 + ch)] = C.v[size_t(I * 4 + ch)];
    }
  const int64_t nt = int64_t(F.targets.size()), ns = int64_t(F.src.size());
  F.sy.resize(size_t(nt));
  F.sx.resize(size_t(nt));
  for (int64_t k = 0; k < nt; ++k) {
    const int64_t t = F.targets[size_t(k)], y = t / F.w, x = t % F.w;
    const int32_t ck = C.tid[size_t((y / 2) * C.w + x / 2)];
    int64_t s = -1;
    if (ck >= 0) {
      const int64_t sy = 2 * int64_t(C.sy[size_t(ck)]) + (y & 1), sx = 2 * int64_t(C.sx[size_t(ck)]) + (x & 1);
      if (sy < F.h && sx < F.w && F.valid[size_t(sy * F.w + sx)]) s = sy * F.w + sx;
    }
    if (s < 0) s = F.src[size_t(draw(seed, uint64_t(level) << 40 | 0xFFFFFull, uint64_t(t), 0) % uint64_t(ns))];
    F.sy[size_t(k)] = int32_t(s / F.w);
    F.sx[size_t(k)] = int32_t(s % F.w);
  }
}

// One component: its box, pyramid and EM, coarse to fine; writes its pixels of `out`.
inline int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Sums over a window of radius r along lines of `len` cells, `step` apart, lines `stride` apart
// (zero outside the line), in place, for `lines` lines.
void box_sums(std::vector<int64_t>& a, int64_t lines, int64_t stride, int64_t len, int64_t step, int64_t r) {
#pragma omp parallel for schedule(static) if (lines * len >= kParallelTargets * 16)
  for (int64_t l = 0; l < lines; ++l) {
    std::vector<int64_t> line(size_t(len + 1), 0);  // prefix sums
    int64_t* base = a.data() + l * stride;
    for (int64_t k = 0; k < len; ++k) line[size_t(k + 1)] = line[size_t(k)] + base[k * step];
    for (int64_t k = 0; k < len; ++k)
      base[k * step] = line[size_t(std::min(len, k + r + 1))] - line[size_t(std::max<int64_t>(0, k - r))];
  }
}

// Sums over three box blurs of radius r each way of one plane of a level (exact integers).
void box3(std::vector<int64_t>& p, int64_t h, int64_t w, int64_t r) {
  for (int pass = 0; pass < 3; ++pass) box_sums(p, h, w, w, 1, r);  // rows
  for (int pass = 0; pass < 3; ++pass) box_sums(p, w, 1, h, w, r);  // columns
}

// The component's low frequencies from the harmonic fill, its detail from the patches: each pixel
// of the component less the mean, over the component's pixels near it, of how far the patch
// result is from the start (a normalised low-pass: three box blurs of radius r each way, about a
// Gaussian of sigma sqrt(r (r + 1)), of that difference and of the component's mask, divided by
// the mask's sum plus kBlendPrior % of a window wholly in the hole). The prior weighs a
// correction by what supports it: over the few pixels of a thin stroke or a hole's edge the mean
// difference is one draw of the texture, not its shading (in a star field without a star there,
// the full correction lifts the black sky to the start's grey, a visible ghost). With `limit` > 0
// the correction is clipped to that many levels either way: shading is a small correction, and a
// larger one is the start's smear of an edge the copies continue (black bars on white pulled
// towards the smear's grey). Exact integers, one rounding (half up).
void blend_low_frequencies(Level& L, const std::vector<int16_t>& start, int64_t r, int64_t limit) {
  const int64_t h = L.h, w = L.w, n = h * w;
  std::array<std::vector<int64_t>, 4> d;  // the differences, then the mask
  for (auto& plane : d) plane.assign(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i)
    if (L.mine[size_t(i)]) {
      for (int ch = 0; ch < 3; ++ch) d[size_t(ch)][size_t(i)] = int64_t(L.v[size_t(i * 4 + ch)]) - start[size_t(i * 4 + ch)];
      d[3][size_t(i)] = 1;
    }
  for (auto& plane : d) box3(plane, h, w, r);
  const int64_t side3 = (2 * r + 1) * (2 * r + 1) * (2 * r + 1);  // one way's three blurs
  const int64_t prior = side3 * side3 * kBlendPrior / 100;
  for (int64_t i = 0; i < n; ++i) {
    if (!L.mine[size_t(i)]) continue;
    const int64_t m = d[3][size_t(i)] + prior;  // > 0: the pixel itself is in it
    for (int ch = 0; ch < 3; ++ch) {
      int64_t low = floor_div(2 * d[size_t(ch)][size_t(i)] + m, 2 * m);
      if (limit > 0) low = std::min(limit * kScale, std::max(-limit * kScale, low));
      const int64_t v = int64_t(L.v[size_t(i * 4 + ch)]) - low;
      L.v[size_t(i * 4 + ch)] = int16_t(std::min<int64_t>(kMax, std::max<int64_t>(0, v)));
    }
  }
}

// The component rebuilt from its copied differences (after Image Melding, Darabi et al. 2012):
// each pixel's difference to each 4-neighbour is the one its source pixel (the last best-patch
// vote's) has to the same neighbour, where that neighbour is known, else the start's; a pair of
// hole pixels copied together (their sources neighbours the same way) takes the difference of
// the pixel first in scan order; a pair across a seam between two copies the mean of either
// source's difference to its own neighbour where the two agree (kSeamAgree), else the median of
// both and the voted result's across the seam (one source's alone was wrong where a periodic
// texture is copied at another phase: a flat brick's zero difference stood in for a mortar
// edge, and the rebuild drifted tens of levels; the voted one alone keeps the copies' offsets,
// seams on a ramp); then Poisson's equation with those
// differences as guidance and the known pixels as boundary, solved by the harmonic fill's own
// solver. On a smooth gradient the copies' offsets vanish (the differences are the gradient's),
// where the blend's low-pass left seams. `image` is the window's, the box at (by0, bx0) of it.
void gradient_rebuild(Level& L, const std::vector<int16_t>& start, const uint8_t* image, int64_t W,
                      const Frame& f, int64_t by0, int64_t bx0) {
  const int64_t h = L.h, w = L.w, n = h * w;
  std::vector<uint8_t> img(size_t(n * 3)), m(size_t(n), 0);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      m[size_t(i)] = L.mine[size_t(i)];
      for (int ch = 0; ch < 3; ++ch)
        img[size_t(i * 3 + ch)] = image[((f.top + by0 + y) * W + f.left + bx0 + x) * 3 + ch];
    }
  // p's own difference to p + (dy, dx), channel ch, in value steps
  auto diff = [&](int64_t p, int64_t dy, int64_t dx, int ch) -> int64_t {
    const int64_t s = L.bsrc.empty() ? -1 : L.bsrc[size_t(p)];
    if (s >= 0) {
      const int64_t sy = s / w + dy, sx = s % w + dx;
      if (sy >= 0 && sy < h && sx >= 0 && sx < w && !L.hole[size_t(sy * w + sx)])
        return int64_t(L.v[size_t(s * 4 + ch)]) - L.v[size_t((sy * w + sx) * 4 + ch)];
    }
    const int64_t q = p + dy * w + dx;
    return int64_t(start[size_t(p * 4 + ch)]) - start[size_t(q * 4 + ch)];
  };
  // A link between two hole pixels whose sources are not neighbours in the same way (a seam
  // between two copies) weighs kSeamEighths / 8: the copies keep their own texture, and what does
  // not fit goes into the seams instead of spreading over both sides.
  auto coherent = [&](int64_t p, int64_t q) {
    const int64_t a = L.bsrc[size_t(p)], b = L.bsrc[size_t(q)];
    // (and in the same columns apart: flat indices alone joined a row's end to the next's start)
    return a >= 0 && b >= 0 && b - a == q - p && b % w - a % w == q % w - p % w;
  };
  std::vector<float> guide(size_t(n * 3), 0.f), edges(size_t(n * 2), 1.f);
  const int64_t dys[4] = {0, 0, -1, 1}, dxs[4] = {-1, 1, 0, 0};
  for (int64_t p = 0; p < n; ++p) {
    if (!L.mine[size_t(p)]) continue;
    const int64_t y = p / w, x = p % w;
    int64_t sum[3] = {0, 0, 0};  // in eighths of value steps
    for (int k = 0; k < 4; ++k) {
      const int64_t qy = y + dys[k], qx = x + dxs[k];
      if (qy < 0 || qy >= h || qx < 0 || qx >= w) continue;  // no flux out of the box
      const int64_t q = qy * w + qx;
      const bool hole_pair = L.mine[size_t(q)] != 0;
      const bool seam = hole_pair && !(L.bsrc.size() && coherent(p, q));
      const int64_t weight = seam ? kSeamEighths : 8;
      if (hole_pair && k % 2 == 1) edges[size_t(p * 2 + k / 2)] = float(weight) / 8.f;
      const bool other_says = hole_pair && q < p;
      for (int ch = 0; ch < 3; ++ch)
        if (seam) {  // (the same from either side, negated: the links agree)
          const int64_t mine = diff(p, dys[k], dxs[k], ch), theirs = -diff(q, -dys[k], -dxs[k], ch);
          const int64_t voted = int64_t(L.v[size_t(p * 4 + ch)]) - L.v[size_t(q * 4 + ch)];
          // (the mean rounded towards zero: the same size from either side)
          sum[ch] += weight * (std::abs(mine - theirs) <= kSeamAgree
                                   ? (mine + theirs) / 2
                                   : std::max(std::min(mine, theirs), std::min(std::max(mine, theirs), voted)));
        } else {
          sum[ch] += weight * (other_says ? -diff(q, -dys[k], -dxs[k], ch) : diff(p, dys[k], dxs[k], ch));
        }
    }
    for (int ch = 0; ch < 3; ++ch) guide[size_t(p * 3 + ch)] = float(sum[ch]) / float(8 * kMax);
  }
  const Frame box{1, h, w, 0, 0, h, w};
  const float mean[3] = {0.5f, 0.5f, 0.5f};
  std::vector<float> res(size_t(n * 3), 0.f);
  harmonic_fill_cpu(img.data(), m.data(), box, mean, res.data(), guide.data(), edges.data());
  for (int64_t i = 0; i < n; ++i) {
    if (!L.mine[size_t(i)]) continue;
    for (int ch = 0; ch < 3; ++ch) {
      const float s = res[size_t(i * 3 + ch)] * float(kMax);
      L.v[size_t(i * 4 + ch)] = int16_t(std::nearbyint(std::min(float(kMax), std::max(0.f, s))));
    }
  }
}

// Each pixel's ring from the known pixels of the level (4-connected): 0 on known pixels, 1 on
// hole pixels next to one, and so on; 0 on hole pixels no ring reaches.
std::vector<int32_t> ring_depth(const Level& L) {
  const int64_t n = L.h * L.w;
  std::vector<int32_t> depth(size_t(n), 0);
  std::vector<uint8_t> state(size_t(n), kOpen);
  for (int64_t i = 0; i < n; ++i) state[size_t(i)] = L.hole[size_t(i)] ? kOpen : kValued;
  int32_t ring_no = 0;
  inward_rings(std::move(state), L.h, L.w, false, [&](const std::vector<int32_t>& ring) {
    ++ring_no;
    for (const int32_t i : ring) depth[size_t(i)] = ring_no;
  });
  return depth;
}

// The component's pixels `percent` % of the way from the start to the patch result (rounded half
// up): below 100, the copied detail is damped towards the harmonic fill. With `ramp` r > 0, only
// from r rings in (4-connected from the known pixels): ring k goes 100 - (100 - percent)
// min(k - 1, r) / r % of the way, all of it on the first ring, where the copies continue what
// the known pixels show (a uniform damping mixes the harmonic fill's smear of an edge into them).
void detail_gain(Level& L, const std::vector<int16_t>& start, int64_t percent, int64_t ramp) {
  const int64_t n = L.h * L.w;
  const std::vector<int32_t> depth = ramp > 0 ? ring_depth(L) : std::vector<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (!L.mine[size_t(i)]) continue;
    int64_t num = 2 * percent, den = 200;  // (percent / 100, as a fraction)
    if (ramp > 0) {  // 100 % at ring 1, `percent` from ring ramp + 1 on (unreached: `percent`)
      const int64_t d = depth[size_t(i)] > 0 ? std::min<int64_t>(ramp, depth[size_t(i)] - 1) : ramp;
      num = 2 * (100 * ramp - (100 - percent) * d);
      den = 200 * ramp;
    }
    for (int ch = 0; ch < 3; ++ch) {
      const int64_t s = start[size_t(i * 4 + ch)], d = int64_t(L.v[size_t(i * 4 + ch)]) - s;
      const int64_t v = s + floor_div(d * num + den / 2, den);
      L.v[size_t(i * 4 + ch)] = int16_t(std::min<int64_t>(kMax, std::max<int64_t>(0, v)));
    }
  }
}

int64_t isqrt(int64_t x) {  // floor(sqrt(x)), exactly
  int64_t s = int64_t(std::sqrt(double(x)));
  while (s > 0 && s * s > x) --s;
  while ((s + 1) * (s + 1) <= x) ++s;
  return s;
}

// The copied detail d = v - start of the component, scaled pixel by pixel so that it carries no
// more than the surroundings show: gain min(1, sqrt(k E_known / E_hole)) (in 1/1024), E_known the
// squared detail of the known grey (the sum of the colours less its normalised low-pass over the
// known pixels, box radius 1) normalised over the known pixels whose 8 neighbours are known (box
// radius 7: carried into the hole), E_hole the normalised local energy of d's grey over the
// component (box radius 2); a pixel d rings deep keeps (1 - that gain) (d - 6) / 8 more, all of it
// from 14 rings in (a thick hole's middle, far from what the surroundings say, keeps its texture);
// all times `percent`, rounded half up. Where no known pixel with known neighbours lies within the
// carry's reach (21 px), E_known is 0 and a pixel under 7 rings deep keeps none of the detail.
void detail_gate(Level& L, const std::vector<int16_t>& start, int64_t k, int64_t percent) {
  const int64_t h = L.h, w = L.w, n = h * w;
  constexpr int64_t r1 = 1, r2 = 7, r3 = 2, a = 6, b = 8, one = 1024;
  std::vector<int64_t> g(size_t(n), 0), w1(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i)
    if (!L.hole[size_t(i)]) {
      g[size_t(i)] = int64_t(L.v[size_t(i * 4)]) + L.v[size_t(i * 4 + 1)] + L.v[size_t(i * 4 + 2)];
      w1[size_t(i)] = 1;
    }
  std::vector<int64_t> s1 = g;
  box3(s1, h, w, r1);
  box3(w1, h, w, r1);
  std::vector<int64_t> e(size_t(n), 0), inner(size_t(n), 0);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      if (L.hole[size_t(i)]) continue;
      bool all = true;  // (outside the box counts as known)
      for (int64_t yy = std::max<int64_t>(0, y - 1); yy <= std::min(h - 1, y + 1); ++yy)
        for (int64_t xx = std::max<int64_t>(0, x - 1); xx <= std::min(w - 1, x + 1); ++xx)
          all = all && !L.hole[size_t(yy * w + xx)];
      if (!all) continue;
      const int64_t ws = std::max<int64_t>(1, w1[size_t(i)]), t = g[size_t(i)] * ws - s1[size_t(i)];
      e[size_t(i)] = t * t / (ws * ws);
      inner[size_t(i)] = 1;
    }
  box3(e, h, w, r2);
  box3(inner, h, w, r2);
  std::vector<int64_t> dg2(size_t(n), 0), wh(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i)
    if (L.mine[size_t(i)]) {
      int64_t d = 0;
      for (int ch = 0; ch < 3; ++ch) d += int64_t(L.v[size_t(i * 4 + ch)]) - start[size_t(i * 4 + ch)];
      dg2[size_t(i)] = d * d;
      wh[size_t(i)] = 1;
    }
  box3(dg2, h, w, r3);
  box3(wh, h, w, r3);
  const std::vector<int32_t> depth = ring_depth(L);
  for (int64_t i = 0; i < n; ++i) {
    if (!L.mine[size_t(i)]) continue;
    const int64_t ek = e[size_t(i)] / std::max<int64_t>(1, inner[size_t(i)]);
    const int64_t eh = std::max<int64_t>(1, dg2[size_t(i)] / std::max<int64_t>(1, wh[size_t(i)]));
    const int64_t sc = std::min(one, isqrt(k * ek * one * one / eh));
    const int64_t deep = std::min(one, std::max<int64_t>(0, floor_div((depth[size_t(i)] - a) * one, b)));
    const int64_t gain = sc + (one - sc) * deep / one;
    for (int ch = 0; ch < 3; ++ch) {
      const int64_t s = start[size_t(i * 4 + ch)], d = int64_t(L.v[size_t(i * 4 + ch)]) - s;
      const int64_t v = s + floor_div(2 * d * percent * gain + 100 * one, 200 * one);
      L.v[size_t(i * 4 + ch)] = int16_t(std::min<int64_t>(kMax, std::max<int64_t>(0, v)));
    }
  }
}

// The fourth value of every pixel of the finest level: how textured the image is around it, the
// mean absolute difference between 4-neighbouring known pixels (summed over the colours) within
// `radius`, times `weight` / 300 (percent, per colour), at most kMax. It sits in the patch
// distance beside the colours, so a hole in a textured region (whose start is smooth) is not
// matched to smooth sources (after Newson et al.'s texture features); the votes copy the colours
// only. Hole pixels whose window holds no known pair take the harmonic interpolation of the values
// around them (the harmonic fill's own solver, in quarter steps), times `gain` / 100. Smooth, not
// carried ring by ring: a ring-by-ring carry runs each border value straight across the hole, and a
// star on the border of a star field became a row of stars. Over the mean: the mean textureness
// of a sparse texture sits below most of its patches' (a star field: mostly empty sky, and the
// stars), and a hole asked for that mean is matched to the emptiest sources (a blank disc).
void texture_channel(Level& L, int64_t weight, int64_t radius, int64_t gain) {
  const int64_t h = L.h, w = L.w, n = h * w;
  std::vector<int64_t> a(size_t(n), 0), c(size_t(n), 0);
  auto grey = [&](int64_t i) {
    return int64_t(L.v[size_t(i * 4)]) + L.v[size_t(i * 4 + 1)] + L.v[size_t(i * 4 + 2)];
  };
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      if (L.hole[size_t(i)]) continue;
      if (x + 1 < w && !L.hole[size_t(i + 1)]) {
        a[size_t(i)] += std::abs(grey(i + 1) - grey(i));
        ++c[size_t(i)];
      }
      if (y + 1 < h && !L.hole[size_t(i + w)]) {
        a[size_t(i)] += std::abs(grey(i + w) - grey(i));
        ++c[size_t(i)];
      }
    }
  for (auto* plane : {&a, &c}) {
    box_sums(*plane, h, w, w, 1, radius);  // rows
    box_sums(*plane, w, 1, h, w, radius);  // columns
  }
  std::vector<int32_t> t(size_t(n), -1);
  for (int64_t i = 0; i < n; ++i)
    if (c[size_t(i)] > 0)
      t[size_t(i)] = int32_t(std::min<int64_t>(kMax, (a[size_t(i)] * weight + 150 * c[size_t(i)]) / (300 * c[size_t(i)])));
  std::vector<uint8_t> img(size_t(n * 3), 0), unset(static_cast<size_t>(n), 0);
  bool any = false;
  for (int64_t i = 0; i < n; ++i) {
    unset[size_t(i)] = t[size_t(i)] < 0;
    any |= unset[size_t(i)] != 0;
    const uint8_t q = uint8_t(unset[size_t(i)] ? 0 : (t[size_t(i)] + 2) / 4);
    for (int ch = 0; ch < 3; ++ch) img[size_t(i * 3 + ch)] = q;
  }
  if (any) {
    const Frame box{1, h, w, 0, 0, h, w};
    const float mean[3] = {0.5f, 0.5f, 0.5f};  // (as poisson_fill's: a region with no border)
    std::vector<float> res(size_t(n * 3), 0.f);
    // (the three channels are the same: the first solved alone)
    harmonic_fill_cpu(img.data(), unset.data(), box, mean, res.data(), nullptr, nullptr, 1);
    for (int64_t i = 0; i < n; ++i) {
      if (!unset[size_t(i)]) continue;
      const float s = res[size_t(i * 3)] * float(kMax);
      const int64_t v = int64_t(std::nearbyint(std::min(float(kMax), std::max(0.f, s))));
      t[size_t(i)] = int32_t(std::min<int64_t>(kMax, (v * gain + 50) / 100));
    }
  }
  for (int64_t i = 0; i < n; ++i) L.v[size_t(i * 4 + 3)] = int16_t(std::max<int32_t>(0, t[size_t(i)]));
}

// Coarse to fine over the pyramid (levels[0] the finest); false when no level can start, or a finer
// one has no source or no target (the component then keeps its start).
bool pyramid(std::vector<Level>& levels, const Completion& em, const PatchParams& P) {
  // The coarsest level that has sources starts; a component with none anywhere keeps the start.
  int top = int(levels.size()) - 1;
  while (top >= 0 && !em.index(levels[size_t(top)])) --top;
  if (top < 0) return false;
  for (int l = top - 1; l >= 0; --l) em.index(levels[size_t(l)]);
  {
    Level& T = levels[size_t(top)];
    const int64_t nt = int64_t(T.targets.size()), ns = int64_t(T.src.size());
    T.sy.resize(size_t(nt));
    T.sx.resize(size_t(nt));
    for (int64_t k = 0; k < nt; ++k) {
      const uint64_t z = draw(P.seed, uint64_t(top) << 40 | 0xFFFFEull, uint64_t(T.targets[size_t(k)]), 0);
      const int64_t s = T.src[size_t(z % uint64_t(ns))];
      T.sy[size_t(k)] = int32_t(s / T.w);
      T.sx[size_t(k)] = int32_t(s % T.w);
    }
  }
  for (int l = top; l >= 0; --l) {
    Level& L = levels[size_t(l)];
    if (l < top) {
      if (L.src.empty() || L.targets.empty()) return false;  // e.g. a hole-riddled box: the start stays
      upsample(levels[size_t(l + 1)], L, P.seed, l);
    }
    L.dist.resize(L.targets.size());
    L.sy2.resize(L.targets.size());
    L.sx2.resize(L.targets.size());
    L.dist2.resize(L.targets.size());
    if (l < top) {  // the finer image from its own sources through the carried field (not the
      // parent's blocky values): each patch weighted by how well it fits those values, then again
      // by how well it fits that first vote. Measured against one vote with equal weights: +0.2 to
      // +0.3 dB hole PSNR and 3-7 % less texture distance on free-form strokes, level elsewhere.
      for (int k = 0; k < 2; ++k) {
        em.measure(L);
        em.vote(L, false);
      }
    }
    if (em.peels(L)) em.onion(L);
    em.em(L, l, l == top);
  }
  return true;
}

// The previous frame's field of this component: the start of this frame's (see PatchState).
// The field under the same key (box, size) when its targets are the same (a static hole);
// otherwise, when the caller declared how far the scene moved since the last frame
// (PatchState::shifted; a pan's leftover moves with the scene, tracked text may change shape),
// the field whose targets, moved by that shift, share the most positions with this one's, when
// they cover at least 90 % of its targets: each target takes the offset (source - target) of the
// scene point it shows, so the copied texture moves with the scene rather than being searched
// anew (sources move with the scene too); a target it does not reach takes its nearest reached
// neighbour's offset.
// Only fields of earlier calls are read (this call's go to `pending`), so the result does not
// depend on the order the components run in. A source that is no longer one (the scene moved
// it into the hole): the nearest usable source within kNear, else a random one.
// False when there is none, or the carried field fits much worse than the field did when it was
// last completed from scratch (a cut; a pan that no shift was declared for): its `base`, which
// a carried field inherits (`base` is set to it), so that a field drifting a little every frame
// cannot ratchet the bar up with it.
bool carry_over(PatchState* state, const std::array<int64_t, 5>& key, Level& L0, const Completion& em,
                const PatchParams& P, double& base) {
  // (nothing to carry: no index, which the pyramid makes again)
  if (state == nullptr || state->fields.empty() || (!state->shifted && state->fields.count(key) == 0))
    return false;
  if (!em.index(L0)) return false;
  const size_t nt = L0.targets.size();
  const int64_t h = L0.h, w = L0.w;
  std::vector<int32_t> sy(nt, -1), sx(nt, -1);
  std::vector<uint8_t> got;  // the targets a moved field reaches
  double prev_base = 0.0;
  bool have = false;
#pragma omp critical(fastfill_patch_state)
  {
    auto it = state->fields.find(key);
    if (it != state->fields.end() && it->second.targets == L0.targets) {
      sy = it->second.sy;
      sx = it->second.sx;
      prev_base = it->second.base;
      have = true;
    } else if (state->shifted) {
      const int64_t dy = state->dy, dx = state->dx;  // the scene's shift since the last frame
      const PatchState::Field* best = nullptr;
      std::array<int64_t, 5> at{};
      size_t shared = 0;
      for (const auto& [k, field] : state->fields) {
        if (k[0] + dy >= key[0] + h || k[0] + dy + k[2] <= key[0] || k[1] + dx >= key[1] + w ||
            k[1] + dx + k[3] <= key[1])
          continue;
        size_t n = 0;
        for (int32_t t : field.targets) {
          const int64_t y = k[0] + t / k[3] + dy - key[0], x = k[1] + t % k[3] + dx - key[1];
          n += y >= 0 && y < h && x >= 0 && x < w && L0.tid[size_t(y * w + x)] >= 0;
        }
        if (n > shared) {
          shared = n;
          best = &field;
          at = k;
        }
      }
      if (best != nullptr && shared * 10 >= nt * 9) {
        got.assign(nt, 0);
        for (size_t j = 0; j < best->targets.size(); ++j) {
          const int32_t t = best->targets[j];
          const int64_t ty = t / at[3], tx = t % at[3];
          const int64_t y = at[0] + ty + dy - key[0], x = at[1] + tx + dx - key[1];
          if (y < 0 || y >= h || x < 0 || x >= w) continue;
          const int32_t k = L0.tid[size_t(y * w + x)];
          if (k < 0) continue;
          sy[size_t(k)] = int32_t(y + best->sy[j] - ty);
          sx[size_t(k)] = int32_t(x + best->sx[j] - tx);
          got[size_t(k)] = 1;
        }
        prev_base = best->base;
        have = true;
      }
    }
  }
  if (!have) return false;
  if (!got.empty()) {
    // A target the moved field does not reach (where the hole grew, or where a shift rounded to
    // whole pixels left a row of the hole behind) takes the offset of its nearest reached
    // neighbour, breadth first: the texture beside it continues there. A random source would be
    // an outlier, and a row of them fails the fit check below (measured on a subtitle band
    // under a 0.5 px a frame tilt: 5x the previous frame's patch distance, against 1.3x).
    std::vector<int32_t> queue;
    queue.reserve(nt);
    for (size_t k = 0; k < nt; ++k)
      if (got[k]) queue.push_back(int32_t(k));
    for (size_t q = 0; q < queue.size(); ++q) {
      const size_t k = size_t(queue[q]);
      const int64_t t = L0.targets[k], ty = t / w, tx = t % w;
      const int64_t ny[4] = {ty - 1, ty + 1, ty, ty}, nx[4] = {tx, tx, tx - 1, tx + 1};
      for (int d = 0; d < 4; ++d) {
        if (ny[d] < 0 || ny[d] >= h || nx[d] < 0 || nx[d] >= w) continue;
        const int32_t j = L0.tid[size_t(ny[d] * w + nx[d])];
        if (j < 0 || got[size_t(j)]) continue;
        got[size_t(j)] = 1;
        sy[size_t(j)] = int32_t(ny[d] + sy[k] - ty);
        sx[size_t(j)] = int32_t(nx[d] + sx[k] - tx);
        queue.push_back(j);
      }
    }
  }
  L0.sy = std::move(sy);
  L0.sx = std::move(sx);
  // A source the hole has moved onto (the scene moved a source next to a static hole into it) or
  // off the box: the nearest source to it within kNear pixels (the texture beside it), else a
  // random one. A random source is an outlier whose vote smears its neighbours: a few dozen of
  // them along a static hole's edge, under a pan's 0.5 px a frame tilt, failed the fit check
  // below and cost a search from scratch every other frame.
  auto usable = [&](int64_t y, int64_t x) {
    return y >= 0 && y < h && x >= 0 && x < w && L0.valid[size_t(y * w + x)];
  };
  for (size_t k = 0; k < nt; ++k) {
    const int64_t y = L0.sy[k], x = L0.sx[k];
    if (usable(y, x)) continue;
    bool found = false;
    for (int64_t r = 1; r <= kNear && !found; ++r)  // rings of growing Chebyshev radius, in a
      for (int64_t dy = -r; dy <= r && !found; ++dy)  // fixed order (deterministic)
        for (int64_t dx = -r; dx <= r; ++dx) {
          if (std::max(std::abs(dy), std::abs(dx)) != r || !usable(y + dy, x + dx)) continue;
          L0.sy[k] = int32_t(y + dy);
          L0.sx[k] = int32_t(x + dx);
          found = true;
          break;
        }
    if (found) continue;
    const int64_t s = L0.src[size_t(draw(P.seed, 0xFFFFDull, uint64_t(L0.targets[k]), 0) % L0.src.size())];
    L0.sy[k] = int32_t(s / w);
    L0.sx[k] = int32_t(s % w);
  }
  L0.dist.assign(nt, 0);
  L0.sy2.resize(nt);
  L0.sx2.resize(nt);
  L0.dist2.resize(nt);
  const std::vector<int16_t> before = L0.v;
  em.vote(L0, false);
  // Much worse than its last completion from scratch (a cut, a pan): from scratch instead, from
  // the same start.
  if (em.colour_mean(L0) <= 2.0 * prev_base + double(P.patch * P.patch * 3 * kScale * kScale)) {
    base = prev_base;
    return true;
  }
  L0.v = before;
  L0.band_passes = -1;  // (the completeness search starts afresh too)
  return false;
}

void complete(const Component& c, const Labels& labels, const uint8_t* image,
              const uint8_t* mask, int64_t W, const Frame& f, const float* start, const PatchParams& P,
              PatchState* state, float* out, int64_t split) {
  const int64_t R = P.radius;
  const int64_t by0 = std::max<int64_t>(0, c.y0 - R), bx0 = std::max<int64_t>(0, c.x0 - R);
  const int64_t by1 = std::min(f.h, c.y1 + R), bx1 = std::min(f.w, c.x1 + R);
  std::vector<Level> levels;
  levels.reserve(20);  // never reallocates (at most 17 levels): `L0` stays valid
  levels.emplace_back();
  Level& L0 = levels[0];
  L0.h = by1 - by0;
  L0.w = bx1 - bx0;
  const int64_t n0 = L0.h * L0.w;
  if (L0.h < P.patch || L0.w < P.patch) return;  // no patch fits: the start (harmonic) stays
  L0.v.assign(size_t(4 * n0), 0);
  L0.hole.assign(size_t(n0), 0);
  L0.mine.assign(size_t(n0), 0);
  for (int64_t y = 0; y < L0.h; ++y)
    for (int64_t x = 0; x < L0.w; ++x) {
      const int64_t wy = by0 + y, wx = bx0 + x, i = y * L0.w + x;
      const bool hole = mask[(f.top + wy) * W + f.left + wx] != 0;
      L0.hole[size_t(i)] = hole;
      L0.mine[size_t(i)] = hole && labels.get(wy, wx) == c.label;
      for (int ch = 0; ch < 3; ++ch) {
        int32_t v;
        if (hole) {
          const float s = start[(wy * f.w + wx) * 3 + ch] * float(kMax);
          v = int32_t(std::nearbyint(std::min(float(kMax), std::max(0.f, s))));
        } else {
          v = int32_t(image[((f.top + wy) * W + f.left + wx) * 3 + ch]) * kScale;
        }
        L0.v[size_t(i * 4 + ch)] = int16_t(v);
      }
    }
  if (P.texture > 0) texture_channel(L0, P.texture, P.texture_radius, P.texture_gain);
  const std::vector<int16_t> start_v = L0.v;
  const Completion em(P, split);
  const std::array<int64_t, 5> key{f.top + by0, f.left + bx0, L0.h, L0.w, c.size};
  double base = -1.0;  // (from scratch: this completion's own)
  if (carry_over(state, key, L0, em, P, base)) {
    em.em(L0, 0, false);
  } else {
    // Levels down to where the component spans about two patches (or `levels`), while a patch
    // fits; made only here (a carried field needs none; a refused carry leaves L0's pixels,
    // hole and ownership as they were, all a coarser level is made from).
    const int64_t span = std::max(c.y1 - c.y0, c.x1 - c.x0);
    int want = 0;
    while ((span >> want) > 2 * P.patch) ++want;
    if (P.levels > 0) want = std::min(want, P.levels - 1);
    for (int k = 0; k < want; ++k) {
      Level C;
      downsample(levels.back(), C);
      if (C.h < P.patch || C.w < P.patch) break;
      levels.push_back(std::move(C));
    }
    if (!pyramid(levels, em, P)) return;
  }
  if (state != nullptr) {
    PatchState::Field field{L0.targets, L0.sy, L0.sx, base >= 0.0 ? base : em.colour_mean(L0)};
#pragma omp critical(fastfill_patch_state)
    state->pending[key] = std::move(field);
  }
  if (P.poisson > 0)
    gradient_rebuild(L0, start_v, image, W, f, by0, bx0);
  else if (P.blend > 0)
    blend_low_frequencies(L0, start_v, P.blend, P.blend_limit);
  if (P.gate > 0)
    detail_gate(L0, start_v, P.gate, P.detail);
  else if (P.detail != 100)
    detail_gain(L0, start_v, P.detail, P.detail_depth);
  for (int64_t y = 0; y < L0.h; ++y)
    for (int64_t x = 0; x < L0.w; ++x) {
      const int64_t i = y * L0.w + x;
      if (!L0.mine[size_t(i)]) continue;
      const int64_t wy = by0 + y, wx = bx0 + x;
      for (int ch = 0; ch < 3; ++ch) out[(wy * f.w + wx) * 3 + ch] = float(L0.v[size_t(i * 4 + ch)]) / float(kMax);
    }
}

// Thickness of a component: the most 4-connected erosions it survives (1 for a 1-pixel-wide line).
int64_t thickness(const Component& c, const Labels& labels) {
  const int64_t h = c.y1 - c.y0 + 2, w = c.x1 - c.x0 + 2;
  std::vector<int32_t> d(size_t(h * w), 0);
  for (int64_t y = 1; y + 1 < h; ++y)
    for (int64_t x = 1; x + 1 < w; ++x)
      if (labels(c.y0 + y - 1, c.x0 + x - 1) == c.label) d[size_t(y * w + x)] = INT32_MAX / 2;
  for (int64_t y = 1; y + 1 < h; ++y)  // city-block distance to the nearest pixel outside
    for (int64_t x = 1; x + 1 < w; ++x) {
      int32_t& v = d[size_t(y * w + x)];
      v = std::min(v, std::min(d[size_t((y - 1) * w + x)], d[size_t(y * w + x - 1)]) + 1);
    }
  int64_t best = 0;
  for (int64_t y = h - 2; y >= 1; --y)
    for (int64_t x = w - 2; x >= 1; --x) {
      int32_t& v = d[size_t(y * w + x)];
      v = std::min(v, std::min(d[size_t((y + 1) * w + x)], d[size_t(y * w + x + 1)]) + 1);
      best = std::max<int64_t>(best, v);
    }
  return best;
}

}  // namespace

void patch_fill_cpu(const uint8_t* image, const uint8_t* mask, const Frame& f, const float* start,
                    const PatchParams& P, PatchState* state, float* out) {
  Labels labels;
  const std::vector<Component> comps = label_components(mask, f.W, f, labels);
  std::vector<size_t> order;
  for (size_t i = 0; i < comps.size(); ++i)
    if (thickness(comps[i], labels) > P.thin) order.push_back(i);
  // Largest first, so that side-by-side components balance across the threads; a large one
  // splits its level loops from kSplitTargets targets instead; the small ones never split (they
  // run side by side, where a nested region would only cost its start). Same arithmetic either way.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return comps[a].size > comps[b].size; });
  std::vector<size_t> big, small;
  for (size_t i : order) (comps[i].size >= kParallelTargets ? big : small).push_back(i);
  for (size_t i : big) complete(comps[i], labels, image, mask, f.W, f, start, P, state, out, kSplitTargets);
  const int64_t ns = int64_t(small.size());
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t k = 0; k < ns; ++k) {
    try {
      const size_t i = small[size_t(k)];
      complete(comps[i], labels, image, mask, f.W, f, start, P, state, out, INT64_MAX);
    } catch (...) {
#pragma omp critical(fastfill_patch_error)
      if (!error) error = std::current_exception();
    }
  }
  if (state != nullptr) {  // this frame's fields, for the next one
    for (auto& [k, field] : state->pending) state->fields[k] = std::move(field);
    state->pending.clear();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fastfill
