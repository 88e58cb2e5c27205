// Python bindings of fastfill._C: every argument is checked here and a bad one raises
// TypeError/ValueError naming it, so no call can crash the interpreter. The work runs with the
// GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#ifdef FASTFILL_WITH_OPENMP
#include <omp.h>
#endif

#include "ops.h"
#include "pixel.h"
#include "propagate.h"

namespace py = pybind11;
using fastfill::CompositeArgs;
using fastfill::Frame;
using fastfill::PrepareArgs;
using Window = std::optional<std::tuple<int64_t, int64_t, int64_t, int64_t>>;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

py::array as_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array, got " +
                         py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  return py::reinterpret_borrow<py::array>(obj);
}

bool is_byte(const py::array& a) {
  return a.dtype().equal(py::dtype::of<uint8_t>()) || a.dtype().equal(py::dtype::of<bool>());
}

void require_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": must be C-contiguous (use numpy.ascontiguousarray)");
}

void require_nonempty(const py::array& a, const char* name) {
  if (a.size() == 0) throw py::value_error(std::string(name) + ": is empty, shape " + shape_str(a));
}

// images [n, H, W, 3] uint8 + masks [n, H, W] uint8/bool, both contiguous; fills n, H, W.
void check_images_masks(const py::array& images, const py::array& masks, Frame& f) {
  if (!images.dtype().equal(py::dtype::of<uint8_t>()))
    throw py::type_error("images: expected uint8, got " + dtype_str(images));
  if (images.ndim() != 4 || images.shape(3) != 3)
    throw py::value_error("images: expected shape [N, H, W, 3], got " + shape_str(images));
  require_nonempty(images, "images");
  require_contiguous(images, "images");
  if (!is_byte(masks)) throw py::type_error("masks: expected uint8 or bool, got " + dtype_str(masks));
  if (masks.ndim() != 3)
    throw py::value_error("masks: expected shape [N, H, W], got " + shape_str(masks));
  if (masks.shape(0) != images.shape(0) || masks.shape(1) != images.shape(1) ||
      masks.shape(2) != images.shape(2))
    throw py::value_error("masks: shape " + shape_str(masks) + " does not match images " +
                          shape_str(images));
  require_contiguous(masks, "masks");
  f.n = images.shape(0);
  f.H = images.shape(1);
  f.W = images.shape(2);
}

void apply_window(const Window& window, Frame& f) {
  if (!window) {
    f.top = f.left = 0;
    f.h = f.H;
    f.w = f.W;
    return;
  }
  std::tie(f.top, f.left, f.h, f.w) = *window;
  if (f.top < 0 || f.left < 0 || f.h < 1 || f.w < 1 || f.top + f.h > f.H || f.left + f.w > f.W)
    throw py::value_error("window: (top, left, height, width) = (" + std::to_string(f.top) + ", " +
                          std::to_string(f.left) + ", " + std::to_string(f.h) + ", " +
                          std::to_string(f.w) + ") is not a non-empty crop of a " +
                          std::to_string(f.H) + "x" + std::to_string(f.W) + " image");
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

bool want_cuda(const std::string& device) {
  if (device == "cpu") return false;
  if (device == "cuda") {
#ifdef FASTFILL_WITH_CUDA
    return true;
#else
    throw py::value_error("device: this build of fastfill has no CUDA kernels (rebuild with the CUDA toolkit)");
#endif
  }
  throw py::value_error("device: expected 'cpu' or 'cuda', got '" + device + "'");
}

// The fill methods by name, in the order of Fill; exported as _C.FILLS (with the patch fill's
// options), which fastfill.ops holds to fastfill.fills.FILLS at import.
enum class Fill { Mean, Harmonic, Patch };
const char* const kFillNames[] = {"mean", "harmonic", "patch"};
const char* const kPatchOptions[] = {"patch", "levels", "iterations", "passes", "radius", "thin", "blend", "blend_limit", "detail", "detail_depth", "gate", "texture", "texture_radius", "texture_gain", "onion", "complete", "poisson", "seed"};

Fill parse_fill(const std::string& fill) {
  std::string names;
  for (size_t i = 0; i < std::size(kFillNames); ++i) {
    if (fill == kFillNames[i]) return static_cast<Fill>(i);
    names += std::string(i ? ", '" : "'") + kFillNames[i] + "'";
  }
  throw py::value_error("fill: expected one of " + names + ", got '" + fill + "'");
}

py::dict fill_table() {
  py::dict d;
  for (const char* name : kFillNames) d[name] = py::tuple();
  py::list patch;
  for (const char* o : kPatchOptions) patch.append(o);
  d["patch"] = py::tuple(patch);
  return d;
}

int64_t option(const py::dict& o, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  if (!o.contains(key)) return fallback;
  const py::object v = o[key];
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v))
    throw py::type_error(std::string(key) + ": expected an int");
  const int64_t x = v.cast<int64_t>();
  if (x < lo || x > hi)
    throw py::value_error(std::string(key) + ": must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                          "], got " + std::to_string(x));
  return x;
}

// The patch fill's options from a dict (absent keys keep their defaults; unknown keys refused).
fastfill::PatchParams patch_params(const py::dict& o) {
  for (auto item : o) {
    const std::string k = py::str(item.first).cast<std::string>();
    if (std::find(std::begin(kPatchOptions), std::end(kPatchOptions), k) == std::end(kPatchOptions))
      throw py::value_error("options: unknown option '" + k + "' of the patch fill");
  }
  fastfill::PatchParams p;
  p.patch = int(option(o, "patch", p.patch, 3, 15));
  if (p.patch % 2 == 0) throw py::value_error("patch: must be odd, got " + std::to_string(p.patch));
  p.levels = int(option(o, "levels", p.levels, 0, 16));
  p.iterations = int(option(o, "iterations", p.iterations, 1, 32));
  p.passes = int(option(o, "passes", p.passes, 1, 16));
  p.radius = option(o, "radius", p.radius, 1, 1 << 16);
  p.thin = option(o, "thin", p.thin, 0, 1 << 20);
  p.blend = option(o, "blend", p.blend, 0, 64);
  p.blend_limit = option(o, "blend_limit", p.blend_limit, 0, 255);
  p.detail = option(o, "detail", p.detail, 0, 100);
  p.detail_depth = option(o, "detail_depth", p.detail_depth, 0, 1 << 16);
  p.gate = option(o, "gate", p.gate, 0, 1000);
  p.texture = option(o, "texture", p.texture, 0, 10000);
  p.texture_radius = option(o, "texture_radius", p.texture_radius, 1, 64);
  p.texture_gain = option(o, "texture_gain", p.texture_gain, 0, 1000);
  p.onion = option(o, "onion", p.onion, 0, int64_t(1) << 40);
  p.complete = option(o, "complete", p.complete, 0, 1000);
  p.poisson = option(o, "poisson", p.poisson, 0, 1);
  p.seed = uint64_t(option(o, "seed", 0, 0, INT64_MAX));
  return p;
}

// Prefill values of every image's window: [n, h, w, 3] floats, written (and read) at hole pixels
// only, so the buffer is left uninitialised: untouched pages cost nothing. The patch fill starts
// from the harmonic one and overwrites the components it completes.
std::unique_ptr<float[]> fill_values(const PrepareArgs& a, Fill fill, const fastfill::PatchParams& p,
                                     fastfill::PatchState* state) {
  const Frame& f = a.f;
  const size_t per = size_t(f.h * f.w * 3);
  std::unique_ptr<float[]> v(new float[size_t(f.n) * per]);
  std::unique_ptr<float[]> start;
  if (fill == Fill::Patch) start.reset(new float[per]);
  for (int64_t b = 0; b < f.n; ++b) {
    Frame one = f;
    one.n = 1;
    const uint8_t* im = a.images + b * f.H * f.W * 3;
    const uint8_t* m = a.masks + b * f.H * f.W;
    float* out = v.get() + size_t(b) * per;
    fastfill::harmonic_fill_cpu(im, m, one, a.mean, out);
    if (fill == Fill::Patch) {
      // (the hole pixels only: the patch fill reads its start there, and a whole-frame copy
      // would pay every page of both buffers, ~25 MB at 1080p, for a hole of a few thousand)
      for (int64_t y = 0; y < f.h; ++y) {
        const uint8_t* row = m + (f.top + y) * f.W + f.left;
        for (int64_t x = 0; x < f.w; ++x)
          if (row[x] != 0) std::memcpy(start.get() + (y * f.w + x) * 3, out + (y * f.w + x) * 3, 3 * sizeof(float));
      }
      fastfill::patch_fill_cpu(im, m, one, start.get(), p, state, out);
    }
  }
  return v;
}

// The checks prepare and fill share: images/masks, window, mean colour; fills the frame, mean and
// pointers of the returned args.
PrepareArgs fill_args(const py::array& images, const py::array& masks, const std::vector<double>& mean,
                      const Window& window) {
  PrepareArgs a{};
  check_images_masks(images, masks, a.f);
  apply_window(window, a.f);
  if (mean.size() != 3) throw py::value_error("mean: expected 3 values (r, g, b), got " + std::to_string(mean.size()));
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(mean[c])) throw py::value_error("mean: values must be finite");
    a.mean[c] = float(mean[c]);
  }
  a.images = static_cast<const uint8_t*>(images.data());
  a.masks = static_cast<const uint8_t*>(masks.data());
  return a;
}

py::array prepare(const py::object& images_o, const py::object& masks_o, const std::vector<double>& mean,
                  int64_t multiple, const Window& window, const std::string& dtype, bool mask_channel,
                  const std::string& device, const std::string& fill, const py::dict& options,
                  fastfill::PatchState* state) {
  py::array images = as_array(images_o, "images"), masks = as_array(masks_o, "masks");
  PrepareArgs a = fill_args(images, masks, mean, window);
  if (multiple < 1 || multiple > 4096) throw py::value_error("multiple: must be in [1, 4096], got " + std::to_string(multiple));
  if (dtype == "float32")
    a.half = false;
  else if (dtype == "float16")
    a.half = true;
  else
    throw py::type_error("dtype: expected float32 or float16, got " + dtype);
  const bool cuda = want_cuda(device);
  const Fill method = parse_fill(fill);
  const fastfill::PatchParams params = patch_params(options);
  a.mask_channel = mask_channel;
  a.Hp = round_up(a.f.h, multiple);
  a.Wp = round_up(a.f.w, multiple);
  const py::ssize_t C = mask_channel ? 4 : 3;
  py::array out = a.half ? py::array(py::dtype("float16"), {py::ssize_t(a.f.n), C, py::ssize_t(a.Hp), py::ssize_t(a.Wp)})
                         : py::array(py::dtype::of<float>(), {py::ssize_t(a.f.n), C, py::ssize_t(a.Hp), py::ssize_t(a.Wp)});
  a.out = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    std::unique_ptr<float[]> values;
    if (method != Fill::Mean) {
      values = fill_values(a, method, params, state);
      a.fill = values.get();
    }
#ifdef FASTFILL_WITH_CUDA
    if (cuda) {
      fastfill::prepare_cuda_host(a);
    } else
#endif
      fastfill::prepare_cpu(a);
  }
  (void)cuda;
  return out;
}

// The harmonic solver with a right-hand side (the patch fill's gradient-domain rebuild, exposed
// for its NumPy transcription and tests): image uint8 [h, w, 3], mask uint8 [h, w] (nonzero =
// hole), guide float32 [h, w, 3], edges float32 [h, w, 2] or None (the weights of each pixel's
// right and lower links between hole pixels) -> float32 [h, w, 3], the solution at hole pixels,
// 0 elsewhere.
py::array poisson_fill(const py::array_t<uint8_t, py::array::c_style>& image,
                       const py::array_t<uint8_t, py::array::c_style>& mask,
                       const py::array_t<float, py::array::c_style>& guide,
                       const std::optional<py::array_t<float, py::array::c_style>>& edges) {
  if (image.ndim() != 3 || image.shape(2) != 3) throw py::value_error("image: expected [h, w, 3] uint8");
  const int64_t h = image.shape(0), w = image.shape(1);
  if (mask.ndim() != 2 || mask.shape(0) != h || mask.shape(1) != w)
    throw py::value_error("mask: expected [h, w] uint8 of the image's size");
  if (guide.ndim() != 3 || guide.shape(0) != h || guide.shape(1) != w || guide.shape(2) != 3)
    throw py::value_error("guide: expected [h, w, 3] float32 of the image's size");
  if (edges && (edges->ndim() != 3 || edges->shape(0) != h || edges->shape(1) != w || edges->shape(2) != 2))
    throw py::value_error("edges: expected [h, w, 2] float32 of the image's size");
  py::array_t<float> out({py::ssize_t(h), py::ssize_t(w), py::ssize_t(3)});
  float* o = out.mutable_data();
  std::fill(o, o + h * w * 3, 0.f);
  const Frame f{1, h, w, 0, 0, h, w};
  const float mean[3] = {0.5f, 0.5f, 0.5f};
  {
    py::gil_scoped_release nogil;
    fastfill::harmonic_fill_cpu(image.data(), mask.data(), f, mean, o, guide.data(),
                                edges ? edges->data() : nullptr);
  }
  return out;
}

static inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Sum over the pixels where `mask` is nonzero of |a - b|, every channel: a, b uint8 [h, w, c]
// of any strides (a may be a view into a frame), mask uint8/bool [h, w] of any strides. Exact
// (int64); one pass with the GIL released, where NumPy needs five passes and two temporaries.
int64_t masked_difference(const py::array& a_in, const py::array& b_in, const py::array& m_in) {
  for (const auto& [arr, name] : {std::pair{&a_in, "a"}, std::pair{&b_in, "b"}}) {
    if (!arr->dtype().equal(py::dtype::of<uint8_t>()) || arr->ndim() != 3)
      throw py::value_error(std::string(name) + ": expected uint8 [h, w, c], got " + dtype_str(*arr) + " " +
                            shape_str(*arr));
  }
  if (!is_byte(m_in) || m_in.ndim() != 2)
    throw py::value_error("mask: expected uint8 or bool [h, w], got " + dtype_str(m_in) + " " + shape_str(m_in));
  for (py::ssize_t k = 0; k < 3; ++k)
    if (a_in.shape(k) != b_in.shape(k) || (k < 2 && m_in.shape(k) != a_in.shape(k)))
      throw py::value_error("a " + shape_str(a_in) + ", b " + shape_str(b_in) + " and mask " +
                            shape_str(m_in) + ": expected the same [h, w] (and c)");
  const int64_t h = a_in.shape(0), w = a_in.shape(1), c = a_in.shape(2);
  const auto* a = static_cast<const uint8_t*>(a_in.data());
  const auto* b = static_cast<const uint8_t*>(b_in.data());
  const auto* m = static_cast<const uint8_t*>(m_in.data());
  const py::ssize_t as0 = a_in.strides(0), as1 = a_in.strides(1), as2 = a_in.strides(2);
  const py::ssize_t bs0 = b_in.strides(0), bs1 = b_in.strides(1), bs2 = b_in.strides(2);
  const py::ssize_t ms0 = m_in.strides(0), ms1 = m_in.strides(1);
  // Pixels whose channels are contiguous in both (any frame view): each run of masked pixels of a
  // row is one contiguous byte range, summed in a loop the compiler vectorises.
  // (one channel: its stride is never stepped, and NumPy gives a new axis's as 0)
  const bool packed = (c == 1 || (as2 == 1 && bs2 == 1)) && as1 == c && bs1 == c;
  int64_t total = 0;
  {
    py::gil_scoped_release nogil;
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* ar = a + y * as0;
      const uint8_t* br = b + y * bs0;
      const uint8_t* mr = m + y * ms0;
      int64_t x = 0;
      while (x < w) {
        if (!mr[x * ms1]) {
          ++x;
          if (ms1 == 1)  // (a row's unmasked bytes skipped eight at a time)
            while (x + 8 <= w && load64(mr + x) == 0) x += 8;
          continue;
        }
        int64_t end = x + 1;
        if (ms1 == 1) {  // (the run's end: memchr's vector scan, not a byte loop)
          const void* zero = std::memchr(mr + end, 0, size_t(w - end));
          end = zero ? static_cast<const uint8_t*>(zero) - mr : w;
        } else {
          while (end < w && mr[end * ms1]) ++end;
        }
        if (packed) {
          const uint8_t* pa = ar + x * c;
          const uint8_t* pb = br + x * c;
          const int64_t n = (end - x) * c;
          // (int32 partial sums of at most 2^23 bytes: the sum-of-absolute-differences pattern
          // compilers turn into one instruction per 16 or 32 bytes)
          for (int64_t i = 0; i < n;) {
            const int64_t stop = std::min<int64_t>(n, i + (int64_t(1) << 23));
            int32_t part = 0;
            for (; i < stop; ++i) part += std::abs(int32_t(pa[i]) - int32_t(pb[i]));
            total += part;
          }
        } else {
          for (int64_t j = x; j < end; ++j)
            for (int64_t k = 0; k < c; ++k) {
              const int v = int(ar[j * as1 + k * as2]) - int(br[j * bs1 + k * bs2]);
              total += v < 0 ? -v : v;
            }
        }
        x = end;
      }
    }
  }
  return total;
}

py::array fill_op(const py::object& images_o, const py::object& masks_o, const std::vector<double>& mean,
                  const Window& window, const std::string& method, const py::dict& options,
                  fastfill::PatchState* state) {
  py::array images = as_array(images_o, "images"), masks = as_array(masks_o, "masks");
  PrepareArgs a = fill_args(images, masks, mean, window);
  const Fill fill = parse_fill(method);
  const bool solved = fill != Fill::Mean;
  const fastfill::PatchParams params = patch_params(options);
  const Frame& f = a.f;
  py::array out(py::dtype::of<uint8_t>(), {py::ssize_t(f.n), py::ssize_t(f.h), py::ssize_t(f.w), py::ssize_t(3)});
  uint8_t* o = static_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    std::unique_ptr<float[]> values;
    if (solved) values = fill_values(a, fill, params, state);
    // Rows copied whole, then the hole pixels overwritten.
    for (int64_t b = 0; b < f.n; ++b)
      for (int64_t y = 0; y < f.h; ++y) {
        const int64_t src = (b * f.H + f.top + y) * f.W + f.left, dst = (b * f.h + y) * f.w;
        std::memcpy(o + dst * 3, a.images + src * 3, size_t(f.w) * 3);
        const uint8_t* m = a.masks + src;
        for (int64_t x = 0; x < f.w; ++x) {
          if (x + 8 <= f.w) {  // most of a frame is not hole: skip 8 mask bytes at a time
            uint64_t word;
            std::memcpy(&word, m + x, 8);
            if (!word) {
              x += 7;
              continue;
            }
          }
          if (!m[x]) continue;
          for (int c = 0; c < 3; ++c)
            o[(dst + x) * 3 + c] = fastfill::to_byte(solved ? values[(dst + x) * 3 + c] : a.mean[c]);
        }
      }
  }
  return out;
}

py::array composite(const py::object& pred_o, const py::object& images_o, const py::object& masks_o,
                    const Window& window, const py::object& out_o, const std::string& device) {
  py::array pred = as_array(pred_o, "pred");
  py::array images = as_array(images_o, "images"), masks = as_array(masks_o, "masks");
  CompositeArgs a{};
  check_images_masks(images, masks, a.f);
  apply_window(window, a.f);
  const Frame& f = a.f;
  if (pred.dtype().equal(py::dtype::of<float>()))
    a.half = false;
  else if (pred.dtype().equal(py::dtype("float16")))
    a.half = true;
  else
    throw py::type_error("pred: expected float32 or float16, got " + dtype_str(pred));
  if (pred.ndim() != 4 || pred.shape(1) != 3)
    throw py::value_error("pred: expected shape [N, 3, H, W], got " + shape_str(pred));
  if (pred.shape(0) != f.n || pred.shape(2) < f.h || pred.shape(3) < f.w)
    throw py::value_error("pred: shape " + shape_str(pred) + " does not cover " + std::to_string(f.n) +
                          " images of " + std::to_string(f.h) + "x" + std::to_string(f.w));
  require_contiguous(pred, "pred");
  a.pred = pred.data();
  a.Hp = pred.shape(2);
  a.Wp = pred.shape(3);
  a.images = static_cast<const uint8_t*>(images.data());
  a.masks = static_cast<const uint8_t*>(masks.data());
  const bool cuda = want_cuda(device);

  py::array out;
  if (out_o.is_none()) {
    out = py::array(py::dtype::of<uint8_t>(), {py::ssize_t(f.n), py::ssize_t(f.h), py::ssize_t(f.w), py::ssize_t(3)});
  } else {
    out = as_array(out_o, "out");
    if (!out.dtype().equal(py::dtype::of<uint8_t>())) throw py::type_error("out: expected uint8, got " + dtype_str(out));
    if (out.ndim() != 4 || out.shape(0) != f.n || out.shape(1) != f.h || out.shape(2) != f.w || out.shape(3) != 3)
      throw py::value_error("out: expected shape (" + std::to_string(f.n) + ", " + std::to_string(f.h) + ", " +
                            std::to_string(f.w) + ", 3), got " + shape_str(out));
    if (!out.writeable()) throw py::value_error("out: is read-only");
    // Rows and batches may be strided (a view into a larger frame); pixels must be packed RGB.
    if (out.strides(3) != 1 || out.strides(2) != 3 || out.strides(1) < 0 || out.strides(0) < 0)
      throw py::value_error("out: pixels must be contiguous RGB bytes (strides [*, *, 3, 1]) with non-negative row strides");
  }
  a.out = static_cast<uint8_t*>(out.mutable_data());
  a.out_batch_stride = out.strides(0);
  a.out_row_stride = out.strides(1);
  {
    py::gil_scoped_release nogil;
#ifdef FASTFILL_WITH_CUDA
    if (cuda) {
      fastfill::composite_cuda_host(a);
    } else
#endif
      fastfill::composite_cpu(a);
  }
  (void)cuda;
  return out;
}

#ifdef FASTFILL_WITH_CUDA
void* as_ptr(uintptr_t p, const char* name) {
  if (p == 0) throw py::value_error(std::string(name) + ": null device pointer");
  return reinterpret_cast<void*>(p);
}

Frame checked_frame(int64_t n, int64_t H, int64_t W, const Window& window) {
  if (n < 1 || H < 1 || W < 1)
    throw py::value_error("n, height, width: must be positive, got " + std::to_string(n) + ", " +
                          std::to_string(H) + ", " + std::to_string(W));
  Frame f{n, H, W, 0, 0, 0, 0};
  apply_window(window, f);
  return f;
}

void prepare_cuda_ptr(uintptr_t images, uintptr_t masks, uintptr_t out, int64_t n, int64_t H, int64_t W,
                      const Window& window, int64_t Hp, int64_t Wp, const std::vector<double>& mean,
                      bool mask_channel, bool half, uintptr_t stream, uintptr_t fill) {
  PrepareArgs a{};
  a.fill = reinterpret_cast<const float*>(fill);  // 0: the flat mean colour
  a.f = checked_frame(n, H, W, window);
  if (Hp < a.f.h || Wp < a.f.w) throw py::value_error("Hp, Wp: smaller than the window");
  if (mean.size() != 3) throw py::value_error("mean: expected 3 values");
  for (int c = 0; c < 3; ++c) a.mean[c] = float(mean[c]);
  a.images = static_cast<const uint8_t*>(as_ptr(images, "images"));
  a.masks = static_cast<const uint8_t*>(as_ptr(masks, "masks"));
  a.out = as_ptr(out, "out");
  a.Hp = Hp;
  a.Wp = Wp;
  a.mask_channel = mask_channel;
  a.half = half;
  fastfill::prepare_cuda(a, reinterpret_cast<void*>(stream));
}

void composite_cuda_ptr(uintptr_t pred, bool half, int64_t Hp, int64_t Wp, uintptr_t images, uintptr_t masks,
                        int64_t n, int64_t H, int64_t W, const Window& window, uintptr_t out,
                        int64_t out_batch_stride, int64_t out_row_stride, uintptr_t stream) {
  CompositeArgs a{};
  a.f = checked_frame(n, H, W, window);
  if (Hp < a.f.h || Wp < a.f.w) throw py::value_error("Hp, Wp: smaller than the window");
  if (out_row_stride < 3 * a.f.w || out_batch_stride < out_row_stride * a.f.h)
    throw py::value_error("out_batch_stride, out_row_stride: too small for the window");
  a.pred = as_ptr(pred, "pred");
  a.half = half;
  a.Hp = Hp;
  a.Wp = Wp;
  a.images = static_cast<const uint8_t*>(as_ptr(images, "images"));
  a.masks = static_cast<const uint8_t*>(as_ptr(masks, "masks"));
  a.out = static_cast<uint8_t*>(as_ptr(out, "out"));
  a.out_batch_stride = out_batch_stride;
  a.out_row_stride = out_row_stride;
  fastfill::composite_cuda(a, reinterpret_cast<void*>(stream));
}
#endif

// The propagation kernels' images: [h, w] masks (bool/uint8) or [h, w, 3] uint8, rows of any
// stride (views into a frame), each row's bytes contiguous.
fastfill::Rows rows_of(const py::object& obj, const char* name, int64_t h, int64_t w, bool rgb, bool writeable) {
  py::array a = as_array(obj, name);
  const bool ok_type = rgb ? a.dtype().equal(py::dtype::of<uint8_t>()) : is_byte(a);
  if (!ok_type || a.ndim() != (rgb ? 3 : 2) || a.shape(0) != h || a.shape(1) != w || (rgb && a.shape(2) != 3))
    throw py::value_error(std::string(name) + ": expected " + (rgb ? "uint8 [h, w, 3]" : "bool or uint8 [h, w]") +
                          " with [h, w] = [" + std::to_string(h) + ", " + std::to_string(w) + "], got " +
                          dtype_str(a) + " " + shape_str(a));
  if (a.strides(1) != (rgb ? 3 : 1) || (rgb && a.strides(2) != 1) || (h > 1 && a.strides(0) < (rgb ? 3 : 1) * w))
    throw py::value_error(std::string(name) + ": each row's pixels must be contiguous, rows in order");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + ": must be writeable");
  return {static_cast<uint8_t*>(const_cast<void*>(a.data())), int64_t(a.strides(0))};
}

// A uint8 plane [h, w] (rows any stride, columns contiguous: a decoded frame's luma) reduced 4x.
py::array area_reduce4(const py::object& obj) {
  const py::array a = as_array(obj, "plane");
  if (!a.dtype().equal(py::dtype::of<uint8_t>()) || a.ndim() != 2)
    throw py::value_error("plane: expected uint8 [h, w], got " + dtype_str(a) + " " + shape_str(a));
  const int64_t h = a.shape(0), w = a.shape(1);
  if (h < 4 || w < 4 || h % 4 || w % 4)
    throw py::value_error("plane: height and width must be positive multiples of 4, got " + shape_str(a));
  const fastfill::Rows src = rows_of(obj, "plane", h, w, false, false);
  py::array_t<uint8_t> out({py::ssize_t(h / 4), py::ssize_t(w / 4)});
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    fastfill::area_reduce4_cpu(src.p, src.rs, h, w, dst);
  }
  return out;
}

// 8-bit planar YUV planes (rows any stride, columns contiguous) to a new or given RGB array.
py::array yuv_to_rgb(const py::object& yo, const py::object& uo, const py::object& vo,
                     const std::vector<int32_t>& coef, const py::object& out_obj) {
  const py::array ya = as_array(yo, "y"), ua = as_array(uo, "u"), va = as_array(vo, "v");
  for (const auto* a : {&ya, &ua, &va})
    if (!a->dtype().equal(py::dtype::of<uint8_t>()) || a->ndim() != 2)
      throw py::value_error("y, u, v: expected uint8 [h, w] planes, got " + dtype_str(*a) + " " + shape_str(*a));
  const int64_t h = ya.shape(0), w = ya.shape(1), ch = ua.shape(0), cw = ua.shape(1);
  if (va.shape(0) != ch || va.shape(1) != cw)
    throw py::value_error("u, v: different shapes, " + shape_str(ua) + " and " + shape_str(va));
  int sy = -1, sx = -1;  // (the smallest that fits: at h or w 1 every one does, and gives the same)
  for (int s = 2; s >= 0; --s) {
    if (ch == ((h + (1 << s) - 1) >> s)) sy = s;
    if (cw == ((w + (1 << s) - 1) >> s)) sx = s;
  }
  if (sy < 0 || sx < 0 || h < 1 || w < 1)
    throw py::value_error("u, v: expected the luma's size " + shape_str(ya) +
                          " or it divided by 2 or 4 (rounded up), got " + shape_str(ua));
  if (coef.size() != 7) throw py::value_error("coefficients: expected 7 integers");
  const fastfill::Rows yr = rows_of(yo, "y", h, w, false, false);
  const fastfill::Rows ur = rows_of(uo, "u", ch, cw, false, false);
  const fastfill::Rows vr = rows_of(vo, "v", ch, cw, false, false);
  py::array out;
  if (out_obj.is_none()) {
    out = py::array_t<uint8_t>({py::ssize_t(h), py::ssize_t(w), py::ssize_t(3)});
  } else {
    out = as_array(out_obj, "out");
  }
  const fastfill::Rows o = rows_of(out, "out", h, w, true, true);
  {
    py::gil_scoped_release nogil;
    fastfill::yuv_to_rgb_cpu(yr.p, yr.rs, ur.p, ur.rs, vr.p, vr.rs, h, w, sy, sx, coef.data(), o.p, o.rs);
  }
  return out;
}

fastfill::RingArgs ring_args(const py::object& cur, const py::object& ring, const py::object& valid,
                             const py::object& warped, const py::object& todo) {
  const py::array c = as_array(cur, "cur");
  if (c.ndim() != 3) throw py::value_error("cur: expected uint8 [h, w, 3], got " + shape_str(c));
  const int64_t h = c.shape(0), w = c.shape(1);
  fastfill::RingArgs a{};
  a.h = h;
  a.w = w;
  a.cur = rows_of(cur, "cur", h, w, true, !todo.is_none());
  a.ring = rows_of(ring, "ring", h, w, false, false);
  a.valid = rows_of(valid, "valid", h, w, false, false);
  a.warped = rows_of(warped, "warped", h, w, true, false);
  if (!todo.is_none()) a.todo = rows_of(todo, "todo", h, w, false, true);
  return a;
}

py::object ring_shift(const py::object& cur, const py::object& ring, const py::object& valid,
                      const py::object& warped) {
  const fastfill::RingArgs a = ring_args(cur, ring, valid, warped, py::none());
  std::optional<std::pair<double, double>> d;
  {
    py::gil_scoped_release nogil;
    d = fastfill::ring_shift(a);
  }
  if (!d) return py::none();
  return py::make_tuple(d->first, d->second);
}

int ring_place(const py::object& cur, const py::object& ring, const py::object& valid, const py::object& warped,
               const py::object& todo, int64_t min_ring, double ring_error) {
  if (todo.is_none()) throw py::type_error("todo: expected an array, got None");
  const fastfill::RingArgs a = ring_args(cur, ring, valid, warped, todo);
  py::gil_scoped_release nogil;
  return fastfill::ring_place(a, min_ring, ring_error);
}

py::tuple given_box(const py::object& known_obj, const py::object& todo) {
  const py::array k = as_array(known_obj, "known");
  if (k.ndim() != 2 || !k.dtype().equal(py::dtype::of<uint8_t>()))  // (255 = known: not a bool)
    throw py::value_error("known: expected uint8 [h, w], got " + dtype_str(k) + " " + shape_str(k));
  const int64_t h = k.shape(0), w = k.shape(1);
  const fastfill::Rows known = rows_of(known_obj, "known", h, w, false, false);
  const fastfill::Rows t = rows_of(todo, "todo", h, w, false, false);
  int64_t box[4], n;
  {
    py::gil_scoped_release nogil;
    n = fastfill::given_box(known, t, h, w, box);
  }
  return py::make_tuple(n, box[0], box[1], box[2], box[3]);
}

py::dict build_info() {
  py::dict d;
  py::list backends;
  backends.append("cpu");
#ifdef FASTFILL_WITH_OPENMP
  d["openmp"] = true;
  d["omp_max_threads"] = omp_get_max_threads();
#else
  d["openmp"] = false;
  d["omp_max_threads"] = 1;
#endif
#ifdef FASTFILL_WITH_CUDA
  backends.append("cuda");
  std::string err;
  const int count = fastfill::cuda_device_count(&err);
  d["cuda_device_count"] = count;
  d["cuda_runtime_status"] = count > 0 ? std::to_string(count) + " device(s)" : "no usable GPU (" + err + ")";
#else
  d["cuda_device_count"] = 0;
  d["cuda_runtime_status"] = "not built";
#endif
  d["backends"] = backends;
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastfill's native pixel kernels (private: use fastfill.ops)";
  m.def("build_info", &build_info, "Back-ends this module was built with and what the machine offers.");
  m.attr("FILLS") = fill_table();
  py::class_<fastfill::PatchState>(m, "PatchState",
                                   "What the patch fill carries from one video frame to the next (opaque).")
      .def(py::init<>())
      .def("__len__", [](const fastfill::PatchState& s) { return s.fields.size(); },
           "Hole components whose field is carried.")
      .def(
          "shift",
          [](fastfill::PatchState& s, const std::optional<std::pair<int64_t, int64_t>>& d) {
            s.shifted = d.has_value();
            s.dy = d ? d->first : 0;
            s.dx = d ? d->second : 0;
          },
          py::arg("shift"),
          "The scene's shift (dy, dx) in whole pixels from the last frame filled to the next, or\n"
          "None when unknown: a hole component that moved or changed then starts from the last\n"
          "frame's field moved by it (kept until set again).")
      .def("prune", &fastfill::PatchState::prune,
           "Forget the fields of the hole components no fill has completed since the last prune\n"
           "(their memory): fastfill.ops.fill prunes after each call, an Inpainter stream after\n"
           "each batch of frames.");
  m.def("prepare", &prepare, py::arg("images"), py::arg("masks"), py::arg("mean"), py::arg("multiple"),
        py::arg("window"), py::arg("dtype"), py::arg("mask_channel"), py::arg("device"), py::arg("fill") = "mean",
        py::arg("options") = py::dict(), py::arg("state") = nullptr,
        "Model input [N, C, Hp, Wp] from uint8 images and masks; hole pixels get the `fill` prefill\n"
        "(`options`: the patch fill's, see fastfill.ops.FILLS).");
  m.def("fill", &fill_op, py::arg("images"), py::arg("masks"), py::arg("mean"), py::arg("window"), py::arg("method"),
        py::arg("options") = py::dict(), py::arg("state") = nullptr,
        "Classical fill: uint8 [N, h, w, 3] with the hole pixels of the window filled by `method`\n"
        "(`options`: the patch fill's, see fastfill.ops.FILLS).");
  m.def("masked_difference", &masked_difference, py::arg("a"), py::arg("b"), py::arg("mask"),
        "Sum of |a - b| over the pixels where `mask` is nonzero, every channel (int): a, b uint8\n"
        "[h, w, c], mask [h, w], any strides.");
  m.def("poisson_fill", &poisson_fill, py::arg("image"), py::arg("mask"), py::arg("guide"),
        py::arg("edges") = py::none(),
        "The harmonic solver with `guide` added to each hole pixel's right-hand side (the patch\n"
        "fill's gradient-domain rebuild): float32 [h, w, 3], the solution at hole pixels.");
  m.def("area_reduce4", &area_reduce4, py::arg("plane"),
        "uint8 [h, w] (rows any stride, columns contiguous; h, w multiples of 4) -> [h/4, w/4]:\n"
        "each 4x4 block's mean, half to even (cv2.resize INTER_AREA's bytes for this case).");
  m.def("yuv_to_rgb", &yuv_to_rgb, py::arg("y"), py::arg("u"), py::arg("v"), py::arg("coefficients"),
        py::arg("out") = py::none(),
        "8-bit planar YUV (luma [h, w]; chroma [h, w] or divided by 2 or 4, rounded up, each sample\n"
        "covering its block) to uint8 RGB [h, w, 3] (new, or `out`); coefficients: 16.16\n"
        "integers {luma gain, luma offset, chroma midpoint, V to R, U to G, V to G, U to B}. See\n"
        "fastfill.ops.yuv_to_rgb.");
  m.def("given_box", &given_box, py::arg("known"), py::arg("todo"),
        "Video propagation: the open pixels (`todo`) where a source's warped known map is 255:\n"
        "(count, y0, x0, y1, x1), their bounding box (zeros when none).");
  m.def("ring_shift", &ring_shift, py::arg("cur"), py::arg("ring"), py::arg("valid"), py::arg("warped"),
        "Video propagation: one Lucas-Kanade step for a translation over the ring (see\n"
        "fastfill.video.propagate): (dx, dy) with warped(x + d) ~ cur(x), or None.");
  m.def("ring_place", &ring_place, py::arg("cur"), py::arg("ring"), py::arg("valid"), py::arg("warped"),
        py::arg("todo"), py::arg("min_ring"), py::arg("ring_error"),
        "Video propagation: check a warped source on the ring and copy what it gives into `cur`\n"
        "(in place, `todo` cleared there): 1 used, 0 refused, -1 nothing to give or check.");
  m.def("composite", &composite, py::arg("pred"), py::arg("images"), py::arg("masks"), py::arg("window"),
        py::arg("out"), py::arg("device"));
#ifdef FASTFILL_WITH_CUDA
  m.def("prepare_cuda", &prepare_cuda_ptr, py::arg("images"), py::arg("masks"), py::arg("out"), py::arg("n"),
        py::arg("height"), py::arg("width"), py::arg("window"), py::arg("Hp"), py::arg("Wp"), py::arg("mean"),
        py::arg("mask_channel"), py::arg("half"), py::arg("stream"), py::arg("fill") = 0,
        "Queue prepare on a CUDA stream; all pointers are device pointers (ints). `fill`: float32 hole\n"
        "values [n, h, w, 3] of the window (the harmonic prefill, solved on the CPU), or 0 for `mean`.");
  m.def("composite_cuda", &composite_cuda_ptr, py::arg("pred"), py::arg("half"), py::arg("Hp"), py::arg("Wp"),
        py::arg("images"), py::arg("masks"), py::arg("n"), py::arg("height"), py::arg("width"), py::arg("window"),
        py::arg("out"), py::arg("out_batch_stride"), py::arg("out_row_stride"), py::arg("stream"),
        "Queue composite on a CUDA stream; all pointers are device pointers (ints).");
#endif
}
