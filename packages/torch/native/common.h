// Shared pieces of the @mindseye/torch addon: how a tensor crosses the N-API boundary,
// argument decoding, and the error guard every exported function runs under.
//
// A tensor crosses to JavaScript as a number: a slot index in a native table plus a
// generation count (handle = generation * 2^24 + slot). Numbers cost nothing to create and need
// no per-object native finalizer: Node-API defers such finalizers to the event loop, so a
// synchronous training loop would pile them up. `dispose` frees a slot at once and bumps its
// generation, so a stale handle is an error, never an alias of a newer tensor. The JavaScript
// side adds a FinalizationRegistry as the safety net for tensors never disposed.
#pragma once

#include <napi.h>
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace mindseye {

Napi::Value Wrap(Napi::Env env, at::Tensor t);
Napi::Value WrapList(Napi::Env env, const std::vector<at::Tensor>& ts);

// The live tensor behind a handle; throws a JavaScript error for a disposed or stale handle.
const at::Tensor& Lookup(const Napi::Value& handle);

inline const at::Tensor& T(const Napi::CallbackInfo& info, size_t i) { return Lookup(info[i]); }

inline bool IsNullish(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

inline c10::optional<at::Tensor> OptT(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || IsNullish(info[i])) return c10::nullopt;
  return T(info, i);
}

// An undefined at::Tensor stands for "none" in many ATen signatures.
inline at::Tensor TOrUndef(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || IsNullish(info[i])) return at::Tensor();
  return T(info, i);
}

inline int64_t I(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<int64_t>(info[i].As<Napi::Number>().DoubleValue());
}
inline double D(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }
inline bool B(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i && info[i].ToBoolean().Value(); }
inline std::string S(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::String>().Utf8Value(); }

inline c10::optional<int64_t> OptI(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || IsNullish(info[i])) return c10::nullopt;
  return I(info, i);
}
inline c10::optional<double> OptD(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || IsNullish(info[i])) return c10::nullopt;
  return D(info, i);
}

std::vector<int64_t> IntList(const Napi::Value& v);
std::vector<at::Tensor> TensorList(const Napi::Value& v);

// A JS number becomes an integral Scalar when it holds an integer, as Python's `2` vs `2.0`;
// booleans become bool Scalars.
at::Scalar ScalarOf(const Napi::Value& v);
inline c10::optional<at::Scalar> OptScalar(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || IsNullish(info[i])) return c10::nullopt;
  return ScalarOf(info[i]);
}

// Dtypes cross the boundary as at::ScalarType's integer value (stable across libtorch versions).
inline at::ScalarType Dtype(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<at::ScalarType>(I(info, i));
}
inline c10::optional<at::ScalarType> OptDtype(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || IsNullish(info[i])) return c10::nullopt;
  return Dtype(info, i);
}
at::Device DeviceOf(const Napi::Value& v);

// Creation options: dtype code, device string, requiresGrad.
at::TensorOptions Options(const Napi::CallbackInfo& info, size_t dtypeIdx);

// Runs `fn` and turns c10::Error / std::exception into a JavaScript Error with torch's message
// (without its C++ backtrace), so a shape mismatch is an exception and never an abort.
using NativeFn = Napi::Value (*)(const Napi::CallbackInfo&);
template <NativeFn fn>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return fn(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

#define MINDSEYE_EXPORT(exports, name) \
  (exports).Set(#name, Napi::Function::New((exports).Env(), Guarded<name>, #name))

void InitTensor(Napi::Env env, Napi::Object exports);
void InitOps(Napi::Env env, Napi::Object exports);
void InitNnOps(Napi::Env env, Napi::Object exports);
void InitRuntime(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);

}  // namespace mindseye
