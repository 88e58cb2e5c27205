// Harmonic fill: each 4-connected hole component gets the solution of Laplace's equation (5-point
// stencil) with the known pixels next to it as Dirichlet values and no flux across the window's
// border. Solved per component, in its own bounding box, by conjugate gradients preconditioned
// with one aggregation multigrid V-cycle: cost grows about linearly with each component's
// bounding box (the hole itself for compact holes; a long diagonal stroke pays for its box), and a
// component's result depends only on the component and its boundary (so ROI crops stay exact).
#include <algorithm>
#include <utility>
#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "components.h"
#include "ops.h"
#include "pixel.h"

namespace fastfill {
namespace {

// Stop when |r|_2 <= kRelTol * |b|_2 in every channel: measured ~3e-5 max error against a direct
// solve on a 300x300 hole (1e-10, in double: 5e-8 at twice the iterations), a hundredth of a
// uint8 level (3.9e-3).
constexpr double kRelTol = 1e-5;
constexpr int kMaxIter = 200;       // bound on CG iterations (about 10 are needed)
constexpr int64_t kCoarsest = 64;   // cells at which the hierarchy stops and a dense solve takes over
// V-cycle: two Gauss-Seidel sweeps each side, and the coarse correction doubled, the usual remedy
// for piecewise-constant interpolation (measured on 1080p holes: 38-64 CG iterations with 1 sweep
// and no scaling, 12-16 with these; one sweep with a 1.8 scale costs ~6 % fewer instructions on a
// square hole, within what the hole's shape changes).
constexpr int kSweeps = 2;
constexpr float kCoarseScale = 2.0f;
// Grids with at least this many cells split their row loops across threads (smaller ones run on
// one thread, and several components run side by side instead).
constexpr int64_t kParallelCells = 1 << 16;

// The row kernels below are compiled twice on x86-64 Linux, for AVX2 and for the baseline, and
// the loader picks one for the CPU (GCC function multi-versioning): measured 1.27x on the solve.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define FF_ROW_KERNEL __attribute__((target_clones("avx2", "default"))) __attribute__((noinline))
#else
#define FF_ROW_KERNEL
#endif

// One grid of the hierarchy, stored with a one-cell border of zero weights so stencils need no
// bounds checks. Cell (y, x) of the grid is index (y + 1) * s + (x + 1), s = w + 2. Channels are
// planes (channel c of cell i at c * n + i) so the row loops vectorise.
struct Level {
  int64_t h = 0, w = 0, s = 0, n = 0;
  int nc = 3;  // channels solved (planes of x, b, r; the rest of the caller's are left alone)
  std::vector<float> diag;  // 0 for cells that are not unknowns
  std::vector<float> inv;   // 1 / diag (0 where diag is 0: those cells stay 0)
  std::vector<float> wr;    // coupling to the right neighbour (both unknown), else 0
  std::vector<float> wd;    // coupling to the neighbour below
  std::vector<float> x, b, r;  // nc planes each
  int64_t at(int64_t y, int64_t xx) const { return (y + 1) * s + (xx + 1); }
  void resize(int64_t hh, int64_t ww, int channels) {
    nc = channels;
    h = hh;
    w = ww;
    s = w + 2;
    n = (h + 2) * s;
    diag.assign(size_t(n), 0.f);
    inv.assign(size_t(n), 0.f);
    wr.assign(size_t(n), 0.f);
    wd.assign(size_t(n), 0.f);
    x.assign(size_t(nc * n), 0.f);
    b.assign(size_t(nc * n), 0.f);
    r.assign(size_t(nc * n), 0.f);
  }
  bool parallel() const { return h * w >= kParallelCells; }
};

// Sum of the coupled neighbours of cell i in plane v.
inline float neighbours(const float* __restrict wr, const float* __restrict wd, const float* __restrict v,
                        int64_t i, int64_t s) {
  return wr[i - 1] * v[i - 1] + wr[i] * v[i + 1] + wd[i - s] * v[i - s] + wd[i] * v[i + s];
}

// One colour of a row: x = (b + neighbours(x)) / diag at cells i0 + par, i0 + par + 2, ... Their
// neighbours are all of the other colour, so the updates are independent (hence `omp simd`).
FF_ROW_KERNEL void gs_row(float* xs, const float* __restrict bs, const float* __restrict wr,
                          const float* __restrict wd, const float* __restrict inv, int64_t i0, int64_t w,
                          int64_t par, int64_t s) {
#pragma omp simd
  for (int64_t k = par; k < w; k += 2) {
    const int64_t i = i0 + k;
    xs[i] = (bs[i] + neighbours(wr, wd, xs, i, s)) * inv[i];
  }
}

// r = b + neighbours(x) - diag * x over cells [a, e).
FF_ROW_KERNEL void residual_row(float* __restrict rs, const float* __restrict xs, const float* __restrict bs,
                                const float* __restrict wr, const float* __restrict wd,
                                const float* __restrict dg, int64_t a, int64_t e, int64_t s) {
#pragma omp simd
  for (int64_t i = a; i < e; ++i) rs[i] = bs[i] + neighbours(wr, wd, xs, i, s) - dg[i] * xs[i];
}

// q = A p over cells [a, e); returns the row's p.q.
FF_ROW_KERNEL double apply_row(float* __restrict qs, const float* __restrict ps, const float* __restrict wr,
                               const float* __restrict wd, const float* __restrict dg, int64_t a, int64_t e,
                               int64_t s) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = a; i < e; ++i) {
    const float v = dg[i] * ps[i] - neighbours(wr, wd, ps, i, s);
    qs[i] = v;
    acc += double(ps[i]) * v;
  }
  return acc;
}

// x += alpha p, r -= alpha q over cells [a, e); returns the row's r.r.
FF_ROW_KERNEL double update_row(float* __restrict xs, float* __restrict rs, const float* __restrict ps,
                                const float* __restrict qs, float alpha, int64_t a, int64_t e) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = a; i < e; ++i) {
    xs[i] += alpha * ps[i];
    const float v = rs[i] - alpha * qs[i];
    rs[i] = v;
    acc += double(v) * v;
  }
  return acc;
}

// Row dot product u.v over cells [a, e).
FF_ROW_KERNEL double dot_row(const float* __restrict u, const float* __restrict v, int64_t a, int64_t e) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = a; i < e; ++i) acc += double(u[i]) * v[i];
  return acc;
}

// Red-black Gauss-Seidel; `order` 0 = red then black, 1 = black then red (the adjoint sweep, so
// the V-cycle is a symmetric preconditioner).
void smooth(Level& L, int order) {
  const int64_t s = L.s, n = L.n;
  for (int pass = 0; pass < 2; ++pass) {
    const int colour = pass ^ order;
#pragma omp parallel for schedule(static) if (L.parallel())
    for (int64_t y = 0; y < L.h; ++y) {
      const int64_t i0 = L.at(y, 0);
      const int64_t par = (y + colour) & 1;  // columns x with x % 2 == par take the update
      for (int ch = 0; ch < L.nc; ++ch)
        gs_row(L.x.data() + ch * n, L.b.data() + ch * n, L.wr.data(), L.wd.data(), L.inv.data(), i0, L.w,
               par, s);
    }
  }
}

void residual(Level& L) {
  const int64_t s = L.s, n = L.n;
#pragma omp parallel for schedule(static) if (L.parallel())
  for (int64_t y = 0; y < L.h; ++y) {
    const int64_t i0 = L.at(y, 0);
    for (int ch = 0; ch < L.nc; ++ch)
      residual_row(L.r.data() + ch * n, L.x.data() + ch * n, L.b.data() + ch * n, L.wr.data(), L.wd.data(),
                   L.diag.data(), i0, i0 + L.w, s);
  }
}

// Galerkin coarse grid of 2x2 aggregates (piecewise-constant interpolation): P^T A P is again a
// weighted 5-point graph Laplacian, so every level uses the same stencil code.
void coarsen(const Level& F, Level& C) {
  C.resize((F.h + 1) / 2, (F.w + 1) / 2, F.nc);
  for (int64_t Y = 0; Y < C.h; ++Y)
    for (int64_t X = 0; X < C.w; ++X) {
      const int64_t y = 2 * Y, x = 2 * X;
      const int64_t i00 = F.at(y, x), i01 = i00 + 1, i10 = i00 + F.s, i11 = i10 + 1;
      const bool has_r = x + 1 < F.w, has_d = y + 1 < F.h;
      float dg = F.diag[i00] + (has_r ? F.diag[i01] : 0.f) + (has_d ? F.diag[i10] : 0.f) +
                 (has_r && has_d ? F.diag[i11] : 0.f);
      float inner = 0.f;
      if (has_r) inner += F.wr[i00] + (has_d ? F.wr[i10] : 0.f);
      if (has_d) inner += F.wd[i00] + (has_r ? F.wd[i01] : 0.f);
      const int64_t I = C.at(Y, X);
      C.diag[I] = dg - 2.f * inner;
      if (has_r) C.wr[I] = F.wr[i01] + (has_d ? F.wr[i11] : 0.f);
      if (has_d) C.wd[I] = F.wd[i10] + (has_r ? F.wd[i11] : 0.f);
    }
}

// Dense Cholesky of the coarsest level (a few dozen unknowns at most).
struct Dense {
  std::vector<int64_t> cells;
  std::vector<double> L;  // lower triangle, row-major n x n
  void factor(const Level& G) {
    cells.clear();
    for (int64_t y = 0; y < G.h; ++y)
      for (int64_t x = 0; x < G.w; ++x)
        if (G.diag[G.at(y, x)] != 0.f) cells.push_back(G.at(y, x));
    const size_t n = cells.size();
    std::vector<double> A(n * n, 0.0);
    for (size_t p = 0; p < n; ++p) {
      A[p * n + p] = G.diag[cells[p]];
      for (size_t q = 0; q < n; ++q) {
        const int64_t d = cells[q] - cells[p];
        if (d == 1) A[p * n + q] = -G.wr[cells[p]];
        if (d == -1) A[p * n + q] = -G.wr[cells[q]];
        if (d == G.s) A[p * n + q] = -G.wd[cells[p]];
        if (d == -G.s) A[p * n + q] = -G.wd[cells[q]];
      }
    }
    L.assign(n * n, 0.0);
    for (size_t j = 0; j < n; ++j) {
      double s = A[j * n + j];
      for (size_t k = 0; k < j; ++k) s -= L[j * n + k] * L[j * n + k];
      const double d = std::sqrt(std::max(s, 1e-300));
      L[j * n + j] = d;
      for (size_t i = j + 1; i < n; ++i) {
        double t = A[i * n + j];
        for (size_t k = 0; k < j; ++k) t -= L[i * n + k] * L[j * n + k];
        L[i * n + j] = t / d;
      }
    }
  }
  void solve(Level& G) const {
    const size_t n = cells.size();
    std::vector<double> y(n);
    for (int ch = 0; ch < G.nc; ++ch) {
      const float* b = G.b.data() + ch * G.n;
      float* x = G.x.data() + ch * G.n;
      for (size_t i = 0; i < n; ++i) {
        double t = b[cells[i]];
        for (size_t k = 0; k < i; ++k) t -= L[i * n + k] * y[k];
        y[i] = t / L[i * n + i];
      }
      for (size_t i = n; i-- > 0;) {
        double t = y[i];
        for (size_t k = i + 1; k < n; ++k) t -= L[k * n + i] * y[k];
        y[i] = t / L[i * n + i];
      }
      for (size_t i = 0; i < n; ++i) x[cells[i]] = float(y[i]);
    }
  }
};

void set_inverse(Level& L) {
  for (size_t i = 0; i < L.diag.size(); ++i) L.inv[i] = L.diag[i] != 0.f ? 1.f / L.diag[i] : 0.f;
}

struct Hierarchy {
  std::vector<Level> levels;
  Dense coarse;

  void build() {
    for (Level& l : levels) set_inverse(l);
    while (levels.back().h * levels.back().w > kCoarsest) {
      Level c;
      coarsen(levels.back(), c);
      set_inverse(c);
      levels.push_back(std::move(c));
    }
    coarse.factor(levels.back());
  }

  // x_0 = V(b_0): one symmetric V-cycle from zero.
  void vcycle(size_t l) {
    Level& F = levels[l];
    if (l + 1 == levels.size()) {
      coarse.solve(F);
      return;
    }
    std::fill(F.x.begin(), F.x.end(), 0.f);
    for (int k = 0; k < kSweeps; ++k) smooth(F, 0);
    residual(F);
    Level& C = levels[l + 1];
    const bool par = F.parallel();
    // Restriction: each coarse cell sums its 2x2 children; children past an odd edge are the
    // zero border of the fine grid.
#pragma omp parallel for schedule(static) if (par)
    for (int64_t Y = 0; Y < C.h; ++Y)
      for (int ch = 0; ch < C.nc; ++ch) {
        const float* fr = F.r.data() + ch * F.n;
        float* cb = C.b.data() + ch * C.n;
        for (int64_t X = 0; X < C.w; ++X) {
          const int64_t i = F.at(2 * Y, 2 * X);
          cb[C.at(Y, X)] = fr[i] + fr[i + 1] + fr[i + F.s] + fr[i + F.s + 1];
        }
      }
    vcycle(l + 1);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t y = 0; y < F.h; ++y)
      for (int ch = 0; ch < F.nc; ++ch) {
        float* fx = F.x.data() + ch * F.n;
        const float* cx = C.x.data() + ch * C.n;
        const float* dg = F.diag.data();
        const int64_t i0 = F.at(y, 0), I0 = C.at(y / 2, 0);
        for (int64_t x = 0; x < F.w; ++x)
          if (dg[i0 + x] != 0.f) fx[i0 + x] += kCoarseScale * cx[I0 + x / 2];
      }
    for (int k = 0; k < kSweeps; ++k) smooth(F, 1);
  }
};

// Per-row partial sums added in row order: the same bits whatever the thread count.
template <class F>
void row_sums(int64_t rows, bool par, double out[3], F body) {
  std::vector<double> part(size_t(rows) * 3, 0.0);
#pragma omp parallel for schedule(static) if (par)
  for (int64_t y = 0; y < rows; ++y) body(y, &part[size_t(y) * 3]);
  out[0] = out[1] = out[2] = 0.0;
  for (int64_t y = 0; y < rows; ++y)
    for (int ch = 0; ch < 3; ++ch) out[ch] += part[size_t(y) * 3 + ch];
}

// Solve one component; writes its hole pixels into out (window-sized, [h, w, 3]).
void solve_component(const Component& c, const Labels& lab, const uint8_t* image, int64_t W,
                     const Frame& f, const float mean[3], float* out, const float* guide,
                     const float* edges, int nc) {
  const int64_t h = f.h, w = f.w;
  Hierarchy H;
  H.levels.reserve(64);  // never reallocates: `L` below stays valid while build() adds levels
  H.levels.emplace_back();
  Level& L = H.levels[0];
  L.resize(c.y1 - c.y0, c.x1 - c.x0, nc);
  const size_t n = L.diag.size();
  // b (the sum of the known neighbours' values) goes straight into the fine level's right-hand
  // side, which is also the CG residual below (x starts at 0, so r = b).
  std::vector<float>& rhs = L.b;
  bool any_known = false;
  // the weight of the link from (ly, lx) to its right (dir 0) or lower (dir 1) neighbour
  auto link = [&](int64_t ly, int64_t lx, int dir) {
    return edges == nullptr ? 1.f : edges[(ly * w + lx) * 2 + dir];
  };
  for (int64_t y = c.y0; y < c.y1; ++y)
    for (int64_t xx = c.x0; xx < c.x1; ++xx) {
      if (lab(y, xx) != c.label) continue;
      const int64_t i = L.at(y - c.y0, xx - c.x0);
      float dg = 0.f;
      const int64_t ny[4] = {y, y, y - 1, y + 1}, nx[4] = {xx - 1, xx + 1, xx, xx};
      for (int k = 0; k < 4; ++k) {
        if (ny[k] < 0 || ny[k] >= h || nx[k] < 0 || nx[k] >= w) continue;  // no flux out of the window
        const bool in_box = ny[k] >= lab.y0 && ny[k] < lab.y0 + lab.h && nx[k] >= lab.x0 && nx[k] < lab.x0 + lab.w;
        if (in_box && lab(ny[k], nx[k]) == c.label) {
          // the right / lower link of this pixel or of the neighbour
          dg += k < 2 ? link(y, std::min(xx, nx[k]), 0) : link(std::min(y, ny[k]), xx, 1);
          continue;
        }
        dg += 1.f;
        // A 4-neighbour outside the component is a known pixel (hole pixels next to it would be in it).
        const uint8_t* px = image + ((f.top + ny[k]) * W + f.left + nx[k]) * 3;
        for (int ch = 0; ch < nc; ++ch) rhs[size_t(ch * L.n + i)] += byte_to_unit(px[ch]);
        any_known = true;
      }
      L.diag[i] = dg;
      if (guide != nullptr)
        for (int ch = 0; ch < nc; ++ch) rhs[size_t(ch * L.n + i)] += guide[(y * w + xx) * 3 + ch];
      if (xx + 1 < c.x1 && lab(y, xx + 1) == c.label) L.wr[i] = link(y, xx, 0);
      if (y + 1 < c.y1 && lab(y + 1, xx) == c.label) L.wd[i] = link(y, xx, 1);
    }
  if (!any_known) {  // the whole window is hole: no boundary, so the mean colour
    for (int64_t y = c.y0; y < c.y1; ++y)
      for (int64_t xx = c.x0; xx < c.x1; ++xx)
        for (int ch = 0; ch < nc; ++ch) out[(y * w + xx) * 3 + ch] = mean[ch];
    return;
  }
  H.build();

  // Conjugate gradients on the fine level, preconditioned by one V-cycle: float vectors, double
  // dot products. Loops run branch-free over whole rows: cells that are not unknowns have zero
  // weights and diagonal, so they stay 0 in every vector.
  const bool par = L.parallel();
  const int64_t N = L.n;
  std::vector<float> x(size_t(nc) * n, 0.f), p(size_t(nc) * n, 0.f), q(size_t(nc) * n, 0.f);
  std::vector<float>& r = L.b;  // the V-cycle's right-hand side is the CG residual itself
  std::vector<float>& z = L.x;  // and its result the preconditioned residual
  // body(ch, i0, i1) -> the row's sum for plane ch, cells [i0, i1) (indices within a plane)
  auto rows = [&](double out[3], auto body) {
    row_sums(L.h, par, out, [&](int64_t y, double* acc) {
      const int64_t i0 = L.at(y, 0);
      for (int ch = 0; ch < nc; ++ch) acc[ch] += body(ch, i0, i0 + L.w);
    });
  };
  auto plane = [N](std::vector<float>& v, int ch) { return v.data() + ch * N; };
  double bnorm[3];
  rows(bnorm, [&](int ch, int64_t a, int64_t e) { return dot_row(plane(r, ch), plane(r, ch), a, e); });
  auto precondition = [&](double rz[3]) {  // z = V(r); rz = r.z per channel
    H.vcycle(0);
    rows(rz, [&](int ch, int64_t a, int64_t e) { return dot_row(plane(r, ch), plane(z, ch), a, e); });
  };
  double rz[3];
  precondition(rz);
  p = z;
  // (a channel not solved is done from the start)
  bool done[3] = {nc < 1, nc < 2, nc < 3};
  for (int it = 0; it < kMaxIter; ++it) {
    double pq[3], rr[3];
    rows(pq, [&](int ch, int64_t a, int64_t e) {  // q = A p
      return apply_row(plane(q, ch), plane(p, ch), L.wr.data(), L.wd.data(), L.diag.data(), a, e, L.s);
    });
    float alpha[3];
    for (int ch = 0; ch < 3; ++ch) {
      // A symmetric positive definite system keeps pq > 0; anything else (rounding at the
      // float floor) ends that channel with the iterate so far rather than with NaNs.
      if (!done[ch] && !(pq[ch] > 0.0 && std::isfinite(pq[ch]) && std::isfinite(rz[ch]))) done[ch] = true;
      alpha[ch] = done[ch] ? 0.f : float(rz[ch] / pq[ch]);
    }
    rows(rr, [&](int ch, int64_t a, int64_t e) {
      return update_row(plane(x, ch), plane(r, ch), plane(p, ch), plane(q, ch), alpha[ch], a, e);
    });
    bool all = true;
    for (int ch = 0; ch < 3; ++ch) {
      if (rr[ch] <= kRelTol * kRelTol * bnorm[ch]) done[ch] = true;
      all = all && done[ch];
    }
    if (all) break;
    double rz_new[3];
    precondition(rz_new);
    float beta[3];
    for (int ch = 0; ch < 3; ++ch) {
      beta[ch] = (done[ch] || rz[ch] == 0.0) ? 0.f : float(rz_new[ch] / rz[ch]);
      rz[ch] = rz_new[ch];
    }
    for (int ch = 0; ch < 3; ++ch) {
      if (done[ch]) continue;
      const float be = beta[ch];
      float* __restrict ps = plane(p, ch);
      const float* __restrict zs = plane(z, ch);
#pragma omp parallel for schedule(static) if (par)
      for (int64_t k = 0; k < N; ++k) ps[k] = zs[k] + be * ps[k];
    }
  }
  for (int64_t y = c.y0; y < c.y1; ++y)
    for (int64_t xx = c.x0; xx < c.x1; ++xx) {
      if (lab(y, xx) != c.label) continue;
      const int64_t i = L.at(y - c.y0, xx - c.x0);
      for (int ch = 0; ch < nc; ++ch)
        out[(y * w + xx) * 3 + ch] = std::min(1.f, std::max(0.f, x[size_t(ch * N + i)]));
    }
}

}  // namespace

void harmonic_fill_cpu(const uint8_t* image, const uint8_t* mask, const Frame& f, const float mean[3],
                       float* out, const float* guide, const float* edges, int channels) {
  const int nc = std::min(3, std::max(1, channels));
  Labels lab;
  const std::vector<Component> comps = label_components(mask, f.W, f, lab);
  // Large components one after another, each with its row loops across the threads; the small
  // ones side by side, largest first. Either way a component's arithmetic is the same (row sums
  // are added in row order), so the result does not depend on the thread count.
  std::vector<size_t> big, small;
  for (size_t i = 0; i < comps.size(); ++i) {
    const Component& c = comps[i];
    ((c.y1 - c.y0) * (c.x1 - c.x0) >= kParallelCells ? big : small).push_back(i);
  }
#ifdef _OPENMP
  // With at least as many large components as threads, running them side by side beats splitting
  // each one's rows (measured on 5 components, 31 % of a 1080p frame: ~110 ms vs ~140 ms).
  if (big.size() >= size_t(omp_get_max_threads())) {
    small.insert(small.end(), big.begin(), big.end());
    big.clear();
  }
#endif
  for (size_t i : big) solve_component(comps[i], lab, image, f.W, f, mean, out, guide, edges, nc);
  std::stable_sort(small.begin(), small.end(),
                   [&](size_t a, size_t b) { return comps[a].size > comps[b].size; });
  const int64_t ns = int64_t(small.size());
  // An exception may not leave an OpenMP region: keep the first and rethrow it after the loop.
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t k = 0; k < ns; ++k) {
    try {
      solve_component(comps[small[size_t(k)]], lab, image, f.W, f, mean, out, guide, edges, nc);
    } catch (...) {
#pragma omp critical(fastfill_harmonic_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fastfill
