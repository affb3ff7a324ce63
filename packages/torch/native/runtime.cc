// The runtime: threads, BLAS, build facts (for `mindseye doctor`), CUDA availability, module init.
#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>

#include <string>

namespace mindseye {

// OpenBLAS keeps its own pthread pool, separate from ATen's OpenMP intra-op threads. Its entry
// points are looked up at run time so the addon also loads against MKL or reference BLAS.
using GetIntFn = int (*)();
using SetIntFn = void (*)(int);
using GetStrFn = char* (*)();

template <typename Fn>
static Fn Lookup(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

static Napi::Value setNumThreads(const Napi::CallbackInfo& info) {
  at::set_num_threads(static_cast<int>(I(info, 0)));
  return info.Env().Undefined();
}
static Napi::Value getNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}
static Napi::Value setBlasThreads(const Napi::CallbackInfo& info) {
  auto fn = Lookup<SetIntFn>("openblas_set_num_threads");
  if (!fn) return Napi::Boolean::New(info.Env(), false);
  fn(static_cast<int>(I(info, 0)));
  return Napi::Boolean::New(info.Env(), true);
}

static int CollectLibrary(struct dl_phdr_info* phdr, size_t, void* data) {
  auto* libs = static_cast<std::vector<std::string>*>(data);
  if (phdr->dlpi_name && *phdr->dlpi_name) libs->emplace_back(phdr->dlpi_name);
  return 0;
}

// Everything `mindseye doctor` reports that only the native side knows.
static Napi::Value buildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("intraOpThreads", at::get_num_threads());
  out.Set("interOpThreads", at::get_num_interop_threads());
  out.Set("parallelInfo", at::get_parallel_info());
  out.Set("config", at::show_config());
  out.Set("cudaAvailable", torch::cuda::is_available());
  out.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
#ifdef MINDSEYE_WITH_CUDA
  out.Set("builtWithCuda", true);
#else
  out.Set("builtWithCuda", false);
#endif
  auto blasThreads = Lookup<GetIntFn>("openblas_get_num_threads");
  auto blasConfig = Lookup<GetStrFn>("openblas_get_config");
  auto blasCore = Lookup<GetStrFn>("openblas_get_corename");
  out.Set("blasThreads", blasThreads ? Napi::Value(Napi::Number::New(env, blasThreads())) : env.Null());
  out.Set("blasConfig", blasConfig ? Napi::Value(Napi::String::New(env, blasConfig())) : env.Null());
  out.Set("blasCore", blasCore ? Napi::Value(Napi::String::New(env, blasCore())) : env.Null());
  std::vector<std::string> libs;
  dl_iterate_phdr(CollectLibrary, &libs);
  auto loaded = Napi::Array::New(env);
  uint32_t n = 0;
  for (const auto& lib : libs) {
    if (lib.find("torch") != std::string::npos || lib.find("c10") != std::string::npos ||
        lib.find("blas") != std::string::npos || lib.find("lapack") != std::string::npos ||
        lib.find("mkl") != std::string::npos || lib.find("omp") != std::string::npos) {
      loaded.Set(n++, lib);
    }
  }
  out.Set("libraries", loaded);
  return out;
}

// glibc malloc tuning for training loops: (mmapThreshold, trimThreshold, topPad) in bytes.
// A training step frees and re-allocates the same large activation buffers every step. With
// glibc's defaults, blocks above the (dynamic) mmap threshold are mmapped and unmapped each
// time, and freed heap tops are trimmed back to the OS, so every step pays page faults to zero
// fresh pages again. Fixed thresholds keep that memory in the process for reuse, as a caching
// allocator does. Returns false where the C library is not glibc.
static Napi::Value tuneAllocator(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(I(info, 0))) == 1;
  ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(I(info, 1))) == 1 && ok;
  ok = mallopt(M_TOP_PAD, static_cast<int>(I(info, 2))) == 1 && ok;
  return Napi::Boolean::New(info.Env(), ok);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// CUDA autocast (torch.autocast("cuda", dtype)): (enabled, dtype code). Returns the previous
// state so scopes nest. Leaving the outermost scope clears the cast-weight cache, as PyTorch does.
// libtorch 2.4 made the autocast state per device type (the CUDA-only calls are deprecated there).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
static bool cudaAutocastEnabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
static void setCudaAutocastEnabled(bool on) { at::autocast::set_autocast_enabled(at::kCUDA, on); }
static void setCudaAutocastDtype(at::ScalarType t) { at::autocast::set_autocast_dtype(at::kCUDA, t); }
#else
static bool cudaAutocastEnabled() { return at::autocast::is_enabled(); }
static void setCudaAutocastEnabled(bool on) { at::autocast::set_enabled(on); }
static void setCudaAutocastDtype(at::ScalarType t) { at::autocast::set_autocast_gpu_dtype(t); }
#endif

static Napi::Value setAutocast(const Napi::CallbackInfo& info) {
  bool previous = cudaAutocastEnabled();
  bool enable = B(info, 0);
  if (enable) {
    setCudaAutocastDtype(Dtype(info, 1));
    at::autocast::increment_nesting();
  } else if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  setCudaAutocastEnabled(enable ? true : B(info, 2));
  return Napi::Boolean::New(info.Env(), previous);
}

// Synchronises the device (for timing GPU work); a no-op on CPU.
static Napi::Value synchronize(const Napi::CallbackInfo& info) {
#ifdef MINDSEYE_WITH_CUDA
  if (torch::cuda::is_available()) torch::cuda::synchronize();
#endif
  return info.Env().Undefined();
}

// A no-op native call, for measuring the cost of crossing the boundary.
static Napi::Value noop(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

void InitRuntime(Napi::Env env, Napi::Object exports) {
  MINDSEYE_EXPORT(exports, setNumThreads);
  MINDSEYE_EXPORT(exports, getNumThreads);
  MINDSEYE_EXPORT(exports, setBlasThreads);
  MINDSEYE_EXPORT(exports, buildInfo);
  MINDSEYE_EXPORT(exports, tuneAllocator);
  MINDSEYE_EXPORT(exports, setAutocast);
  MINDSEYE_EXPORT(exports, synchronize);
  MINDSEYE_EXPORT(exports, noop);
}

}  // namespace mindseye

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  mindseye::InitTensor(env, exports);
  mindseye::InitOps(env, exports);
  mindseye::InitNnOps(env, exports);
  mindseye::InitRuntime(env, exports);
  mindseye::InitDistributed(env, exports);
  return exports;
}

NODE_API_MODULE(mindseye_torch, InitAddon)
