// CUDA implementations: one thread per output pixel, on the caller's stream, same per-pixel math
// (pixel.h) as the CPU path.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "ops.h"
#include "pixel.h"

namespace fastfill {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// This thread's pixel (b, y, x) of an [n, h, w] grid; false past its end.
struct Pixel {
  int64_t b, y, x;
  __device__ bool locate(int64_t n, int64_t h, int64_t w) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n * h * w) return false;
    x = i % w;
    y = (i / w) % h;
    b = i / (w * h);
    return true;
  }
};

template <class T>
__global__ void prepare_kernel(PrepareArgs a) {
  const Frame f = a.f;
  Pixel px;
  if (!px.locate(f.n, a.Hp, a.Wp)) return;
  const int64_t b = px.b, y = px.y, x = px.x;
  const int64_t sy = f.top + reflect_index(y, f.h);
  const int64_t sx = f.left + reflect_index(x, f.w);
  const int64_t src = (b * f.H + sy) * f.W + sx;
  const int64_t C = a.mask_channel ? 4 : 3;
  const int64_t plane = a.Hp * a.Wp;
  // The harmonic prefill is solved on the CPU and uploaded as `fill` (window-sized [n, h, w, 3]).
  const float* fv = a.fill ? a.fill + ((b * f.h + sy - f.top) * f.w + sx - f.left) * 3 : nullptr;
  prepare_pixel(static_cast<T*>(a.out) + b * C * plane + y * a.Wp + x, plane, a.mask_channel,
                a.images + src * 3, a.masks[src] != 0, fv, y < f.h && x < f.w, Direct<T>{a.mean});
}

template <class T>
__global__ void composite_kernel(CompositeArgs a) {
  const Frame f = a.f;
  Pixel px;
  if (!px.locate(f.n, f.h, f.w)) return;
  const int64_t b = px.b, y = px.y, x = px.x;
  const int64_t src = (b * f.H + f.top + y) * f.W + f.left + x;
  const int64_t plane = a.Hp * a.Wp;
  const T* pred = static_cast<const T*>(a.pred) + b * 3 * plane + y * a.Wp + x;
  composite_pixel(a.out + b * a.out_batch_stride + y * a.out_row_stride + 3 * x, a.images + src * 3,
                  a.masks[src] != 0, [&](int k) { return to_float(pred[k * plane]); });
}

constexpr int kThreads = 256;

unsigned blocks_for(int64_t total) { return unsigned((total + kThreads - 1) / kThreads); }

}  // namespace

void prepare_cuda(const PrepareArgs& a, void* stream) {
  const int64_t total = a.f.n * a.Hp * a.Wp;
  auto s = static_cast<cudaStream_t>(stream);
  if (a.half)
    prepare_kernel<uint16_t><<<blocks_for(total), kThreads, 0, s>>>(a);
  else
    prepare_kernel<float><<<blocks_for(total), kThreads, 0, s>>>(a);
  check(cudaGetLastError(), "prepare kernel launch");
}

void composite_cuda(const CompositeArgs& a, void* stream) {
  const int64_t total = a.f.n * a.f.h * a.f.w;
  auto s = static_cast<cudaStream_t>(stream);
  if (a.half)
    composite_kernel<uint16_t><<<blocks_for(total), kThreads, 0, s>>>(a);
  else
    composite_kernel<float><<<blocks_for(total), kThreads, 0, s>>>(a);
  check(cudaGetLastError(), "composite kernel launch");
}

namespace {

// Device buffers freed on every exit path, errors included.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) { check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { check(cudaStreamCreate(&s), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s); }
};

size_t frame_bytes(const Frame& f, int channels) { return size_t(f.n * f.H * f.W * channels); }

}  // namespace

void prepare_cuda_host(const PrepareArgs& host) {
  Stream st;
  PrepareArgs a = host;
  const size_t out_bytes = size_t(a.f.n * (a.mask_channel ? 4 : 3) * a.Hp * a.Wp) * (a.half ? 2 : 4);
  DeviceBuffer img(frame_bytes(a.f, 3)), msk(frame_bytes(a.f, 1)), out(out_bytes);
  check(cudaMemcpyAsync(img.p, host.images, frame_bytes(a.f, 3), cudaMemcpyHostToDevice, st.s), "copy images");
  check(cudaMemcpyAsync(msk.p, host.masks, frame_bytes(a.f, 1), cudaMemcpyHostToDevice, st.s), "copy masks");
  a.images = static_cast<const uint8_t*>(img.p);
  a.masks = static_cast<const uint8_t*>(msk.p);
  a.out = out.p;
  const size_t fill_bytes = host.fill ? size_t(a.f.n * a.f.h * a.f.w * 3) * sizeof(float) : 0;
  DeviceBuffer fill(fill_bytes);
  if (host.fill) {
    check(cudaMemcpyAsync(fill.p, host.fill, fill_bytes, cudaMemcpyHostToDevice, st.s), "copy fill");
    a.fill = static_cast<const float*>(fill.p);
  }
  prepare_cuda(a, st.s);
  check(cudaMemcpyAsync(host.out, out.p, out_bytes, cudaMemcpyDeviceToHost, st.s), "copy out");
  check(cudaStreamSynchronize(st.s), "prepare");
}

void composite_cuda_host(const CompositeArgs& host) {
  Stream st;
  CompositeArgs a = host;
  const Frame& f = a.f;
  const size_t pred_bytes = size_t(f.n * 3 * a.Hp * a.Wp) * (a.half ? 2 : 4);
  const size_t row = size_t(f.w * 3);
  DeviceBuffer pred(pred_bytes), img(frame_bytes(f, 3)), msk(frame_bytes(f, 1)), out(size_t(f.n * f.h) * row);
  check(cudaMemcpyAsync(pred.p, host.pred, pred_bytes, cudaMemcpyHostToDevice, st.s), "copy pred");
  check(cudaMemcpyAsync(img.p, host.images, frame_bytes(f, 3), cudaMemcpyHostToDevice, st.s), "copy images");
  check(cudaMemcpyAsync(msk.p, host.masks, frame_bytes(f, 1), cudaMemcpyHostToDevice, st.s), "copy masks");
  a.pred = pred.p;
  a.images = static_cast<const uint8_t*>(img.p);
  a.masks = static_cast<const uint8_t*>(msk.p);
  a.out = static_cast<uint8_t*>(out.p);
  a.out_row_stride = int64_t(row);
  a.out_batch_stride = int64_t(row) * f.h;
  composite_cuda(a, st.s);
  // Back into the caller's (possibly strided) output, one image at a time.
  for (int64_t b = 0; b < f.n; ++b)
    check(cudaMemcpy2DAsync(host.out + b * host.out_batch_stride, size_t(host.out_row_stride),
                            static_cast<uint8_t*>(out.p) + b * f.h * row, row, row, size_t(f.h),
                            cudaMemcpyDeviceToHost, st.s),
          "copy out");
  check(cudaStreamSynchronize(st.s), "composite");
}

int cuda_device_count(std::string* error) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (error) *error = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

}  // namespace fastfill
