// The two pixel ops, one declaration each per back-end. csrc knows nothing of models: it moves and
// blends pixels. All sizes in elements; `*_stride` are byte strides where noted.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <vector>
#include <string>

namespace fastfill {

// A crop window (top, left, h, w) of an image batch [n, H, W, 3] and its masks [n, H, W].
struct Frame {
  int64_t n, H, W;
  int64_t top, left, h, w;
};

struct PrepareArgs {
  const uint8_t* images;  // [n, H, W, 3] contiguous
  const uint8_t* masks;   // [n, H, W] contiguous, nonzero = hole
  Frame f;
  int64_t Hp, Wp;         // padded output size (>= h, w)
  float mean[3];          // hole colour, RGB in [0, 1]
  bool mask_channel;      // 4 output channels (GLCIC) or 3 (Context Encoder)
  bool half;              // float16 output (as uint16 bits) instead of float32
  void* out;              // [n, C, Hp, Wp] contiguous
  // Hole values [n, h, w, 3] in [0, 1] (the window's size), or null for the flat `mean` colour.
  // The harmonic prefill is solved on the CPU (harmonic_fill_cpu) and handed in here.
  const float* fill;
};

struct CompositeArgs {
  const void* pred;       // [n, 3, Hp, Wp] contiguous, float32 or float16
  bool half;
  int64_t Hp, Wp;
  const uint8_t* images;  // [n, H, W, 3] contiguous
  const uint8_t* masks;   // [n, H, W] contiguous
  Frame f;
  uint8_t* out;           // [n, h, w, 3]; pixels contiguous, batch and row strides in bytes
  int64_t out_batch_stride, out_row_stride;
};

void prepare_cpu(const PrepareArgs& a);

// Harmonic fill of the window `f` (n = 1) of `image` [H, W, 3] / `mask` [H, W]: every 4-connected
// hole component gets the solution of Laplace's equation with the known pixels next to it as
// boundary values (no flux across the window's border); a window that is all hole gets `mean`.
// Writes the hole pixels of `out` [h, w, 3] (values in [0, 1]); other pixels are left as they are.
// With `guide` ([h, w, 3], or null), each hole pixel's right-hand side also gets guide's value
// there: Poisson's equation whose guidance field sums to it over the pixel's 4 neighbours (the
// patch fill's gradient-domain rebuild). With `edges` ([h, w, 2], or null = all 1), the weight of
// the link from each pixel to its right and its lower neighbour where both are hole pixels of
// one component (a weighted Laplacian; links to known pixels weigh 1).
// `channels` < 3: only the first ones are solved and written (each channel is solved alone: the
// same values as in a solve of all three).
void harmonic_fill_cpu(const uint8_t* image, const uint8_t* mask, const Frame& f, const float mean[3],
                       float* out, const float* guide = nullptr, const float* edges = nullptr,
                       int channels = 3);
void composite_cpu(const CompositeArgs& a);

// dst [h/4, w/4] = the 4x4 blocks' means of src (uint8 rows `stride` bytes apart), half to even.
void area_reduce4_cpu(const uint8_t* src, int64_t stride, int64_t h, int64_t w, uint8_t* dst);

// 8-bit planar YUV to RGB: luma [h, w], chroma [ceil(h / 2^sy), ceil(w / 2^sx)] (each sample
// covers its block: nearest; sy, sx in 0..2), rows of the given byte strides; `coef` in 16.16
// fixed point: {luma gain, luma offset, chroma midpoint, V to R, U to G, V to G, U to B}. Each
// channel is (gain * (Y - offset) + term + 2^15) >> 16, clamped to 0..255.
void yuv_to_rgb_cpu(const uint8_t* y, int64_t ys, const uint8_t* u, int64_t us, const uint8_t* v,
                    int64_t vs, int64_t h, int64_t w, int sy, int sx, const int32_t coef[7],
                    uint8_t* out, int64_t os);

// Options of the patch fill (see fastfill.ops.FILLS for their meaning and bounds).
struct PatchParams {
  int patch = 5;        // patch side (odd, 3..15)
  int levels = 0;       // most pyramid levels (0 = as many as the hole's size calls for)
  int iterations = 2;   // EM rounds at level l (0 = finest): 1 + iterations * l
  int passes = 5;       // PatchMatch passes per EM round at level l: min(passes, 1 + l)
  int64_t radius = 96;  // search box: each component's bounding box grown by this, in pixels
  int64_t thin = 2;     // components at most this thick (4-connected erosions) keep the start
  int64_t blend = 10;   // radius of the low-pass taken from the harmonic fill (0 = none)
  // > 0: the blend's correction at most this many levels either way (0 = no limit)
  int64_t blend_limit = 16;
  int64_t detail = 90;  // percent of the way from the start to the patch result
  // > 0: `detail` from ring detail_depth + 1 on; nearer the known pixels more, all of it on ring 1
  // (not with `gate`, which has its own depth rule)
  int64_t detail_depth = 0;
  int64_t gate = 0;  // > 0: the detail scaled to the surroundings' (detail_gate's k; 0 = off)
  int64_t texture = 200;       // weight (percent) of the textureness channel in the patch distance
  int64_t texture_radius = 2;  // its window radius, pixels
  // percent of the harmonic interpolation of the textureness the hole's pixels ask for
  int64_t texture_gain = 190;
  // levels whose component cells x sources is at most this start from an onion peel (0: none)
  int64_t onion = 1000000;
  // weight (percent) of the completeness votes: each known patch within one patch side of the
  // hole votes into its closest hole patch (0 = none)
  int64_t complete = 200;
  // 1: the component rebuilt from its copied differences (Poisson's equation) instead of `blend`
  int64_t poisson = 0;
  uint64_t seed = 0;
};

// What a patch fill carries from one frame of a video to the next: the finest nearest-neighbour
// field of each hole component, by the component's box (absolute top, left, height, width) and
// size. A component whose box, size and targets are the same in the next frame starts from it
// and refines it (one EM round at the finest level) instead of searching from scratch, so a static
// background under a static mask keeps its sources and does not flicker; one whose carried field
// fits, over the colours, more than twice as badly as the field did when last completed from
// scratch (a cut, a pan) is completed from scratch again.
struct PatchState {
  struct Field {
    std::vector<int32_t> targets, sy, sx;
    // the colours' mean patch distance when it was last completed from scratch (a carried
    // field inherits it): what a carried field's fit is judged against
    double base = 0.0;
    bool fresh = true;  // written since the last prune
  };
  std::map<std::array<int64_t, 5>, Field> fields;
  std::map<std::array<int64_t, 5>, Field> pending;  // written by the call under way
  // The scene's shift (whole pixels) from the frame of `fields` to the next call's, when known
  // (set by the caller for each frame): a component whose key changed carries its field by it.
  bool shifted = false;
  int64_t dy = 0, dx = 0;
  // Forget the fields not written since the last prune: a component that moves or changes has a
  // new key every frame, and the old ones would otherwise pile up for the whole video.
  void prune() {
    for (auto it = fields.begin(); it != fields.end();) {
      if (it->second.fresh) {
        it->second.fresh = false;
        ++it;
      } else {
        it = fields.erase(it);
      }
    }
  }
};

// Patch fill of the window `f` (n = 1): multi-scale PatchMatch completion of every 4-connected
// hole component from the known pixels of its search box, started from `start` (the window's
// harmonic fill, [h, w, 3], read at hole pixels). Writes the hole pixels of `out` [h, w, 3]
// (values in [0, 1]) of the components it completes; the others are left as they are. `state`
// (may be null): carried from the previous frame and updated for the next.
void patch_fill_cpu(const uint8_t* image, const uint8_t* mask, const Frame& f, const float* start,
                    const PatchParams& p, PatchState* state, float* out);

#ifdef FASTFILL_WITH_CUDA
// Pointers are device pointers; the kernels are queued on `stream` (a cudaStream_t) and return
// at once. An error from the launch is thrown as std::runtime_error.
void prepare_cuda(const PrepareArgs& a, void* stream);
void composite_cuda(const CompositeArgs& a, void* stream);
// The same ops on host arrays: copy in, run on a private stream, copy out, wait. For tests and
// one-off use; the engine path uses the pointer versions above.
void prepare_cuda_host(const PrepareArgs& a);
void composite_cuda_host(const CompositeArgs& a);
int cuda_device_count(std::string* error);
#endif

}  // namespace fastfill
