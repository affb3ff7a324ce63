// Tensor lifetime, creation, properties, conversion to and from bytes, autograd, random state.
#include "common.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_set>

namespace mindseye {

// ---------------------------------------------------------------------------------------------
// Lifetime and accounting

namespace {
constexpr uint64_t kSlotBits = 24;
constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;

// A deque keeps references to existing slots valid while new slots are appended.
struct SlotTable {
  std::deque<at::Tensor> tensors;
  std::deque<uint32_t> generations;
  std::vector<uint32_t> freeSlots;
  size_t live = 0;
};
SlotTable& Slots() {
  static SlotTable table;
  return table;
}

// Decodes a handle; returns the slot or -1 when the handle is not a live tensor.
int64_t SlotOf(const Napi::Value& handle) {
  if (!handle.IsNumber()) return -1;
  double d = handle.As<Napi::Number>().DoubleValue();
  if (!(d >= 0)) return -1;
  auto v = static_cast<uint64_t>(d);
  uint64_t slot = v & kSlotMask;
  auto& s = Slots();
  if (slot >= s.tensors.size() || s.generations[slot] != static_cast<uint32_t>(v >> kSlotBits)) return -1;
  if (!s.tensors[slot].defined()) return -1;
  return static_cast<int64_t>(slot);
}
}  // namespace

Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  auto& s = Slots();
  uint32_t slot;
  if (!s.freeSlots.empty()) {
    slot = s.freeSlots.back();
    s.freeSlots.pop_back();
  } else {
    if (s.tensors.size() > kSlotMask) throw Napi::Error::New(env, "more than 16M live tensors: dispose tensors or use torch.scope");
    slot = static_cast<uint32_t>(s.tensors.size());
    s.tensors.emplace_back();
    s.generations.push_back(0);
  }
  s.tensors[slot] = std::move(t);
  ++s.live;
  double handle = static_cast<double>((static_cast<uint64_t>(s.generations[slot]) << kSlotBits) | slot);
  return Napi::Number::New(env, handle);
}

const at::Tensor& Lookup(const Napi::Value& handle) {
  int64_t slot = SlotOf(handle);
  if (slot < 0) {
    throw Napi::Error::New(handle.Env(), "use of a disposed tensor (it was freed by dispose() or by the end of a torch.scope)");
  }
  return Slots().tensors[static_cast<size_t>(slot)];
}

Napi::Value WrapList(Napi::Env env, const std::vector<at::Tensor>& ts) {
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) arr.Set(static_cast<uint32_t>(i), Wrap(env, ts[i]));
  return arr;
}

std::vector<int64_t> IntList(const Napi::Value& v) {
  auto arr = v.As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    out[i] = static_cast<int64_t>(arr.Get(i).As<Napi::Number>().DoubleValue());
  }
  return out;
}

std::vector<at::Tensor> TensorList(const Napi::Value& v) {
  auto arr = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    out.push_back(Lookup(arr.Get(i)));
  }
  return out;
}

at::Scalar ScalarOf(const Napi::Value& v) {
  if (v.IsBoolean()) return at::Scalar(v.As<Napi::Boolean>().Value());
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9007199254740992.0) {
    return at::Scalar(static_cast<int64_t>(d));
  }
  return at::Scalar(d);
}

at::Device DeviceOf(const Napi::Value& v) {
  if (IsNullish(v)) return at::Device(at::kCPU);
  return at::Device(v.As<Napi::String>().Utf8Value());
}

at::TensorOptions Options(const Napi::CallbackInfo& info, size_t i) {
  auto opts = at::TensorOptions().dtype(Dtype(info, i));
  if (info.Length() > i + 1) opts = opts.device(DeviceOf(info[i + 1]));
  return opts;
}

// Requires grad after creation, as torch.zeros(..., requires_grad=True) does.
static Napi::Value Made(const Napi::CallbackInfo& info, size_t gradIdx, at::Tensor t) {
  if (B(info, gradIdx)) t.requires_grad_(true);
  return Wrap(info.Env(), std::move(t));
}

// Frees the handle's tensor now. Disposing twice (or a stale handle) is a no-op, so the
// JavaScript safety-net finalizer may run after an explicit dispose.
static Napi::Value dispose(const Napi::CallbackInfo& info) {
  int64_t slot = SlotOf(info[0]);
  if (slot >= 0) {
    auto& s = Slots();
    s.tensors[slot].reset();
    ++s.generations[slot];
    s.freeSlots.push_back(static_cast<uint32_t>(slot));
    --s.live;
  }
  return info.Env().Undefined();
}

static Napi::Value isDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), SlotOf(info[0]) < 0);
}

// { tensors: live handles, bytes: distinct storages they (and leaf .grad) hold }
static Napi::Value memory(const Napi::CallbackInfo& info) {
  std::unordered_set<const void*> seen;
  double bytes = 0;
  auto count = [&](const at::Tensor& t) {
    if (!t.defined() || !t.has_storage()) return;
    const void* key = t.storage().unsafeGetStorageImpl();
    if (seen.insert(key).second) bytes += static_cast<double>(t.storage().nbytes());
  };
  for (const at::Tensor& t : Slots().tensors) {
    count(t);
    if (t.defined() && t.is_leaf() && t.grad().defined()) count(t.grad());
  }
  auto out = Napi::Object::New(info.Env());
  out.Set("tensors", static_cast<double>(Slots().live));
  out.Set("bytes", bytes);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Creation: (shape, dtype, device, requiresGrad[, generator])

static c10::optional<at::Generator> OptGen(const Napi::CallbackInfo& info, size_t i);

static Napi::Value zeros(const Napi::CallbackInfo& info) { return Made(info, 3, at::zeros(IntList(info[0]), Options(info, 1))); }
static Napi::Value ones(const Napi::CallbackInfo& info) { return Made(info, 3, at::ones(IntList(info[0]), Options(info, 1))); }
static Napi::Value empty(const Napi::CallbackInfo& info) { return Made(info, 3, at::empty(IntList(info[0]), Options(info, 1))); }
static Napi::Value full(const Napi::CallbackInfo& info) {
  return Made(info, 4, at::full(IntList(info[0]), ScalarOf(info[1]), Options(info, 2)));
}
static Napi::Value randn(const Napi::CallbackInfo& info) {
  return Made(info, 3, at::randn(IntList(info[0]), OptGen(info, 4), Options(info, 1)));
}
static Napi::Value rand(const Napi::CallbackInfo& info) {
  return Made(info, 3, at::rand(IntList(info[0]), OptGen(info, 4), Options(info, 1)));
}
// (low, high, shape, dtype, device, generator)
static Napi::Value randint(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::randint(I(info, 0), I(info, 1), IntList(info[2]), OptGen(info, 5), Options(info, 3)));
}
// (start, end, step, dtype, device, requiresGrad)
static Napi::Value arange(const Napi::CallbackInfo& info) {
  return Made(info, 5, at::arange(ScalarOf(info[0]), ScalarOf(info[1]), ScalarOf(info[2]), Options(info, 3)));
}
// (n, m, dtype, device, requiresGrad)
static Napi::Value eye(const Napi::CallbackInfo& info) {
  return Made(info, 4, at::eye(I(info, 0), I(info, 1), Options(info, 2)));
}
// (n, generator) -> int64 permutation
static Napi::Value randperm(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::randperm(I(info, 0), OptGen(info, 1), at::TensorOptions().dtype(at::kLong)));
}

// (bytes: TypedArray | ArrayBuffer view, shape, dtype) -> CPU tensor holding a copy of the bytes.
// A copy, not a view: JS memory must not be freed under a tensor the autograd graph may keep.
static Napi::Value fromBytes(const Napi::CallbackInfo& info) {
  auto view = info[0].As<Napi::TypedArray>();
  auto shape = IntList(info[1]);
  auto dtype = Dtype(info, 2);
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  size_t nbytes = t.numel() * t.element_size();
  if (view.ByteLength() != nbytes) {
    throw Napi::Error::New(info.Env(), "fromBytes: got " + std::to_string(view.ByteLength()) + " bytes, shape " +
                                           c10::str(t.sizes()) + " of " + c10::toString(dtype) + " needs " +
                                           std::to_string(nbytes));
  }
  auto* src = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
  if (nbytes) std::memcpy(t.data_ptr(), src, nbytes);
  return Wrap(info.Env(), t);
}

// tensor -> ArrayBuffer with its elements in row-major order (copied from any device/layout).
static Napi::Value toBytes(const Napi::CallbackInfo& info) {
  at::Tensor t = T(info, 0).detach().to(at::kCPU).contiguous();
  size_t nbytes = t.numel() * t.element_size();
  auto buf = Napi::ArrayBuffer::New(info.Env(), nbytes);
  if (nbytes) std::memcpy(buf.Data(), t.data_ptr(), nbytes);
  return buf;
}

// Writes the tensor's bytes into an existing Uint8Array at an offset (for safetensors writes
// without an intermediate buffer).
static Napi::Value copyBytesInto(const Napi::CallbackInfo& info) {
  at::Tensor t = T(info, 0).detach().to(at::kCPU).contiguous();
  auto view = info[1].As<Napi::TypedArray>();
  size_t offset = static_cast<size_t>(I(info, 2));
  size_t nbytes = t.numel() * t.element_size();
  if (offset + nbytes > view.ByteLength()) throw Napi::Error::New(info.Env(), "copyBytesInto: destination too small");
  auto* dst = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset() + offset;
  if (nbytes) std::memcpy(dst, t.data_ptr(), nbytes);
  return Napi::Number::New(info.Env(), static_cast<double>(nbytes));
}

static Napi::Value item(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  if (t.numel() != 1) {
    throw Napi::Error::New(info.Env(), "item(): a tensor with " + std::to_string(t.numel()) +
                                           " elements cannot be converted to a number (expected exactly 1)");
  }
  at::Scalar s = t.item();
  if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
  return Napi::Number::New(info.Env(), s.toDouble());
}

// ---------------------------------------------------------------------------------------------
// Properties

static Napi::Value shape(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  auto arr = Napi::Array::New(info.Env(), t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) arr.Set(static_cast<uint32_t>(i), static_cast<double>(t.size(i)));
  return arr;
}
static Napi::Value strides(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  auto arr = Napi::Array::New(info.Env(), t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) arr.Set(static_cast<uint32_t>(i), static_cast<double>(t.stride(i)));
  return arr;
}
static Napi::Value dtype(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<int>(T(info, 0).scalar_type()));
}
static Napi::Value device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), T(info, 0).device().str());
}
static Napi::Value numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(T(info, 0).numel()));
}
static Napi::Value isContiguous(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), T(info, 0).is_contiguous());
}
static Napi::Value toString(const Napi::CallbackInfo& info) {
  std::ostringstream os;
  os << T(info, 0);
  return Napi::String::New(info.Env(), os.str());
}
// (t, dtype|null, device|null, copy)
static Napi::Value to(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  auto dtype = OptDtype(info, 1).value_or(t.scalar_type());
  at::Device dev = IsNullish(info[2]) ? t.device() : DeviceOf(info[2]);
  return Wrap(info.Env(), t.to(dev, dtype, /*non_blocking=*/false, /*copy=*/B(info, 3)));
}
// Another handle to the same tensor (shares storage and autograd identity).
static Napi::Value alias(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0)); }

// ---------------------------------------------------------------------------------------------
// Autograd

static Napi::Value requiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), T(info, 0).requires_grad());
}
static Napi::Value setRequiresGrad(const Napi::CallbackInfo& info) {
  T(info, 0).requires_grad_(B(info, 1));
  return info.Env().Undefined();
}
static Napi::Value isLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), T(info, 0).is_leaf());
}
static Napi::Value gradFnName(const Napi::CallbackInfo& info) {
  const auto& fn = T(info, 0).grad_fn();
  if (!fn) return info.Env().Null();
  return Napi::String::New(info.Env(), fn->name());
}
static Napi::Value grad(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  if (!t.is_leaf() && !t.retains_grad()) return info.Env().Null();  // PyTorch warns and returns None here
  const at::Tensor& g = t.grad();
  if (!g.defined()) return info.Env().Null();
  return Wrap(info.Env(), g);
}
// (t, grad|null): sets or clears .grad (clearing = PyTorch's zero_grad(set_to_none=True)).
static Napi::Value setGrad(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  t.mutable_grad() = TOrUndef(info, 1);
  return info.Env().Undefined();
}
static Napi::Value detach(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).detach()); }
static Napi::Value retainGrad(const Napi::CallbackInfo& info) {
  T(info, 0).retain_grad();
  return info.Env().Undefined();
}
// (t, gradient|null, retainGraph, createGraph)
static Napi::Value backward(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  at::Tensor gradient = TOrUndef(info, 1);
  if (!gradient.defined() && t.numel() != 1) {
    throw Napi::Error::New(info.Env(), "backward(): grad can be implicitly created only for scalar outputs; pass a gradient of shape " +
                                           c10::str(t.sizes()));
  }
  t.backward(gradient, B(info, 2) ? c10::optional<bool>(true) : c10::nullopt, B(info, 3));
  return info.Env().Undefined();
}
// (outputs[], inputs[], gradOutputs[]|null, retainGraph, createGraph, allowUnused) -> (Tensor|null)[]
static Napi::Value autogradGrad(const Napi::CallbackInfo& info) {
  auto outputs = TensorList(info[0]);
  auto inputs = TensorList(info[1]);
  std::vector<at::Tensor> gradOutputs;
  if (!IsNullish(info[2])) gradOutputs = TensorList(info[2]);
  bool createGraph = B(info, 4);
  auto grads = torch::autograd::grad(outputs, inputs, gradOutputs,
                                     B(info, 3) ? c10::optional<bool>(true) : c10::nullopt, createGraph, B(info, 5));
  auto arr = Napi::Array::New(info.Env(), grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    arr.Set(static_cast<uint32_t>(i), grads[i].defined() ? Wrap(info.Env(), grads[i]) : info.Env().Null());
  }
  return arr;
}
static Napi::Value isGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}
static Napi::Value setGradEnabled(const Napi::CallbackInfo& info) {
  at::GradMode::set_enabled(B(info, 0));
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Random state. A Generator crosses the boundary as an External holding an at::Generator.

struct GeneratorBox {
  at::Generator g;
};

static c10::optional<at::Generator> OptGen(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || IsNullish(info[i])) return c10::nullopt;
  return info[i].As<Napi::External<GeneratorBox>>().Data()->g;
}

static at::Generator GenOrDefault(const Napi::CallbackInfo& info, size_t i) {
  auto g = OptGen(info, i);
  return g ? *g : at::detail::getDefaultCPUGenerator();
}

static Napi::Value manualSeed(const Napi::CallbackInfo& info) {
  // As torch.manual_seed: the CPU generator and every CUDA device's.
  at::manual_seed(static_cast<uint64_t>(I(info, 0)));
  return info.Env().Undefined();
}
static Napi::Value newGenerator(const Napi::CallbackInfo& info) {
  auto* box = new GeneratorBox{at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(I(info, 0)))};
  return Napi::External<GeneratorBox>::New(info.Env(), box, [](Napi::Env, GeneratorBox* b) { delete b; });
}
static Napi::Value generatorSeed(const Napi::CallbackInfo& info) {
  auto gen = GenOrDefault(info, 1);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(static_cast<uint64_t>(I(info, 0)));
  return info.Env().Undefined();
}
// (generator|null) -> uint8 tensor (same bytes as torch.get_rng_state())
static Napi::Value getRngState(const Napi::CallbackInfo& info) {
  auto gen = GenOrDefault(info, 0);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return Wrap(info.Env(), at::Tensor(gen.get_state()));
}
// (state, generator|null)
static Napi::Value setRngState(const Napi::CallbackInfo& info) {
  auto gen = GenOrDefault(info, 1);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(T(info, 0));
  return info.Env().Undefined();
}

// In-place random fills used by initialisers: (t, a, b, generator)
static Napi::Value uniform_(const Napi::CallbackInfo& info) {
  T(info, 0).uniform_(D(info, 1), D(info, 2), OptGen(info, 3));
  return info.Env().Undefined();
}
static Napi::Value normal_(const Napi::CallbackInfo& info) {
  T(info, 0).normal_(D(info, 1), D(info, 2), OptGen(info, 3));
  return info.Env().Undefined();
}
// (t, p, generator) -> new tensor of 0/1 draws with probability p (same dtype)
static Napi::Value bernoulli(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::bernoulli(T(info, 0), D(info, 1), OptGen(info, 2)));
}
// (probs [.., C], numSamples, replacement, generator) -> int64 indices
static Napi::Value multinomial(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::multinomial(T(info, 0), I(info, 1), B(info, 2), OptGen(info, 3)));
}

void InitTensor(Napi::Env env, Napi::Object exports) {
  MINDSEYE_EXPORT(exports, dispose);
  MINDSEYE_EXPORT(exports, isDisposed);
  MINDSEYE_EXPORT(exports, memory);
  MINDSEYE_EXPORT(exports, zeros);
  MINDSEYE_EXPORT(exports, ones);
  MINDSEYE_EXPORT(exports, empty);
  MINDSEYE_EXPORT(exports, full);
  MINDSEYE_EXPORT(exports, randn);
  MINDSEYE_EXPORT(exports, rand);
  MINDSEYE_EXPORT(exports, randint);
  MINDSEYE_EXPORT(exports, randperm);
  MINDSEYE_EXPORT(exports, arange);
  MINDSEYE_EXPORT(exports, eye);
  MINDSEYE_EXPORT(exports, fromBytes);
  MINDSEYE_EXPORT(exports, toBytes);
  MINDSEYE_EXPORT(exports, copyBytesInto);
  MINDSEYE_EXPORT(exports, item);
  MINDSEYE_EXPORT(exports, shape);
  MINDSEYE_EXPORT(exports, strides);
  MINDSEYE_EXPORT(exports, dtype);
  MINDSEYE_EXPORT(exports, device);
  MINDSEYE_EXPORT(exports, numel);
  MINDSEYE_EXPORT(exports, isContiguous);
  MINDSEYE_EXPORT(exports, toString);
  MINDSEYE_EXPORT(exports, to);
  MINDSEYE_EXPORT(exports, alias);
  MINDSEYE_EXPORT(exports, requiresGrad);
  MINDSEYE_EXPORT(exports, setRequiresGrad);
  MINDSEYE_EXPORT(exports, isLeaf);
  MINDSEYE_EXPORT(exports, gradFnName);
  MINDSEYE_EXPORT(exports, grad);
  MINDSEYE_EXPORT(exports, setGrad);
  MINDSEYE_EXPORT(exports, detach);
  MINDSEYE_EXPORT(exports, retainGrad);
  MINDSEYE_EXPORT(exports, backward);
  MINDSEYE_EXPORT(exports, autogradGrad);
  MINDSEYE_EXPORT(exports, isGradEnabled);
  MINDSEYE_EXPORT(exports, setGradEnabled);
  MINDSEYE_EXPORT(exports, manualSeed);
  MINDSEYE_EXPORT(exports, newGenerator);
  MINDSEYE_EXPORT(exports, generatorSeed);
  MINDSEYE_EXPORT(exports, getRngState);
  MINDSEYE_EXPORT(exports, setRngState);
  MINDSEYE_EXPORT(exports, uniform_);
  MINDSEYE_EXPORT(exports, normal_);
  MINDSEYE_EXPORT(exports, bernoulli);
  MINDSEYE_EXPORT(exports, multinomial);
}

}  // namespace mindseye
