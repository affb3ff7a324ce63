// Tensor ops: elementwise, reductions, linear algebra, shape and indexing, in-place updates.
// Elementwise ops are dispatched through one function per arity with an op code; the
// name -> code tables are exported, so JavaScript never duplicates them.
#include "common.h"
#include <c10/core/GradMode.h>

namespace mindseye {

// A JS number as a 0-dim "wrapped number" tensor: type promotion then treats it like a Python
// scalar (float32 tensor + 2.5 stays float32), exactly as PyTorch does for literals.
static at::Tensor WrappedScalar(const Napi::Value& v, const at::Device& device) {
  at::Tensor t = at::scalar_to_tensor(ScalarOf(v), device);
  t.unsafeGetTensorImpl()->set_wrapped_number(true);
  return t;
}
// Tensor handles are numbers too, so JavaScript says which number arguments are scalars with a
// bit mask (bit k set: the k-th operand of the op is a scalar). Booleans are always scalars.
static bool IsScalar(const Napi::Value& v, uint32_t mask, int bit) {
  return v.IsBoolean() || (mask >> bit) & 1u;
}
static uint32_t Mask(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Uint32Value() : 0;
}
static at::Tensor TensorOrScalar(const Napi::Value& v, bool scalar, const at::Device& device) {
  if (scalar) return WrappedScalar(v, device);
  return Lookup(v);
}

// ---------------------------------------------------------------------------------------------
// Binary elementwise: (code, a, b) where a or b may be a number.

#define BINARY_OPS(X) \
  X(add) X(sub) X(mul) X(div) X(pow) X(maximum) X(minimum) X(eq) X(ne) X(lt) X(le) X(gt) X(ge) \
  X(logicalAnd) X(logicalOr) X(logicalXor) X(remainder) X(floorDivide) X(atan2) X(bitwiseAnd) X(bitwiseOr) \
  X(divTrunc) X(divFloor) X(fmod)

enum class BinaryOp {
#define X(name) name,
  BINARY_OPS(X)
#undef X
};

static at::Tensor ApplyBinary(BinaryOp op, const at::Tensor& a, const at::Tensor& b) {
  switch (op) {
    case BinaryOp::add: return at::add(a, b);
    case BinaryOp::sub: return at::sub(a, b);
    case BinaryOp::mul: return at::mul(a, b);
    case BinaryOp::div: return at::div(a, b);
    case BinaryOp::pow: return at::pow(a, b);
    case BinaryOp::maximum: return at::maximum(a, b);
    case BinaryOp::minimum: return at::minimum(a, b);
    case BinaryOp::eq: return at::eq(a, b);
    case BinaryOp::ne: return at::ne(a, b);
    case BinaryOp::lt: return at::lt(a, b);
    case BinaryOp::le: return at::le(a, b);
    case BinaryOp::gt: return at::gt(a, b);
    case BinaryOp::ge: return at::ge(a, b);
    case BinaryOp::logicalAnd: return at::logical_and(a, b);
    case BinaryOp::logicalOr: return at::logical_or(a, b);
    case BinaryOp::logicalXor: return at::logical_xor(a, b);
    case BinaryOp::remainder: return at::remainder(a, b);
    case BinaryOp::floorDivide: return at::floor_divide(a, b);
    case BinaryOp::atan2: return at::atan2(a, b);
    case BinaryOp::bitwiseAnd: return at::bitwise_and(a, b);
    case BinaryOp::bitwiseOr: return at::bitwise_or(a, b);
    case BinaryOp::divTrunc: return at::div(a, b, "trunc");
    case BinaryOp::divFloor: return at::div(a, b, "floor");
    case BinaryOp::fmod: return at::fmod(a, b);
  }
  throw std::runtime_error("unknown binary op code");
}

// (code, a, b, scalarMask)
static Napi::Value binary(const Napi::CallbackInfo& info) {
  auto op = static_cast<BinaryOp>(I(info, 0));
  uint32_t mask = Mask(info, 3);
  bool aScalar = IsScalar(info[1], mask, 0), bScalar = IsScalar(info[2], mask, 1);
  // The device comes from whichever operand is a tensor.
  at::Device dev = !aScalar ? T(info, 1).device() : T(info, 2).device();
  return Wrap(info.Env(), ApplyBinary(op, TensorOrScalar(info[1], aScalar, dev), TensorOrScalar(info[2], bScalar, dev)));
}

// In-place binary for optimizers and initialisers: (code, self, other, alpha|null, otherIsScalar)
static Napi::Value binaryInplace(const Napi::CallbackInfo& info) {
  auto op = static_cast<BinaryOp>(I(info, 0));
  at::Tensor self = T(info, 1);
  bool scalar = IsScalar(info[2], Mask(info, 4), 0);
  switch (op) {
    case BinaryOp::add:
      if (scalar) self.add_(ScalarOf(info[2]));
      else self.add_(T(info, 2), info.Length() > 3 && !IsNullish(info[3]) ? ScalarOf(info[3]) : at::Scalar(1));
      break;
    case BinaryOp::sub:
      if (scalar) self.sub_(ScalarOf(info[2]));
      else self.sub_(T(info, 2), info.Length() > 3 && !IsNullish(info[3]) ? ScalarOf(info[3]) : at::Scalar(1));
      break;
    case BinaryOp::mul: scalar ? self.mul_(ScalarOf(info[2])) : self.mul_(T(info, 2)); break;
    case BinaryOp::div: scalar ? self.div_(ScalarOf(info[2])) : self.div_(T(info, 2)); break;
    case BinaryOp::pow: scalar ? self.pow_(ScalarOf(info[2])) : self.pow_(T(info, 2)); break;
    default: throw Napi::Error::New(info.Env(), "this op has no in-place form here");
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Unary elementwise: (code, a)

#define UNARY_OPS(X) \
  X(exp) X(log) X(sqrt) X(rsqrt) X(abs) X(neg) X(relu) X(gelu) X(geluTanh) X(silu) X(sigmoid) X(tanh) \
  X(logicalNot) X(sin) X(cos) X(floor) X(ceil) X(round) X(sign) X(reciprocal) X(square) X(isnan) X(isinf) \
  X(isfinite) X(erf) X(log1p) X(expm1) X(log2) X(trunc) X(bitwiseNot) X(logSigmoid) X(sqrt_) X(exp_) X(zero_) \
  X(contiguous) X(clone) X(erfinv_) X(signbit)

enum class UnaryOp {
#define X(name) name,
  UNARY_OPS(X)
#undef X
};

static Napi::Value unary(const Napi::CallbackInfo& info) {
  auto op = static_cast<UnaryOp>(I(info, 0));
  at::Tensor a = T(info, 1);
  at::Tensor r;
  switch (op) {
    case UnaryOp::exp: r = at::exp(a); break;
    case UnaryOp::log: r = at::log(a); break;
    case UnaryOp::sqrt: r = at::sqrt(a); break;
    case UnaryOp::rsqrt: r = at::rsqrt(a); break;
    case UnaryOp::abs: r = at::abs(a); break;
    case UnaryOp::neg: r = at::neg(a); break;
    case UnaryOp::relu: r = at::relu(a); break;
    case UnaryOp::gelu: r = at::gelu(a, "none"); break;
    case UnaryOp::geluTanh: r = at::gelu(a, "tanh"); break;
    case UnaryOp::silu: r = at::silu(a); break;
    case UnaryOp::sigmoid: r = at::sigmoid(a); break;
    case UnaryOp::tanh: r = at::tanh(a); break;
    case UnaryOp::logicalNot: r = at::logical_not(a); break;
    case UnaryOp::sin: r = at::sin(a); break;
    case UnaryOp::cos: r = at::cos(a); break;
    case UnaryOp::floor: r = at::floor(a); break;
    case UnaryOp::ceil: r = at::ceil(a); break;
    case UnaryOp::round: r = at::round(a); break;
    case UnaryOp::sign: r = at::sign(a); break;
    case UnaryOp::reciprocal: r = at::reciprocal(a); break;
    case UnaryOp::square: r = at::square(a); break;
    case UnaryOp::isnan: r = at::isnan(a); break;
    case UnaryOp::isinf: r = at::isinf(a); break;
    case UnaryOp::isfinite: r = at::isfinite(a); break;
    case UnaryOp::erf: r = at::erf(a); break;
    case UnaryOp::log1p: r = at::log1p(a); break;
    case UnaryOp::expm1: r = at::expm1(a); break;
    case UnaryOp::log2: r = at::log2(a); break;
    case UnaryOp::trunc: r = at::trunc(a); break;
    case UnaryOp::bitwiseNot: r = at::bitwise_not(a); break;
    case UnaryOp::logSigmoid: r = at::log_sigmoid(a); break;
    case UnaryOp::sqrt_: a.sqrt_(); return info.Env().Undefined();
    case UnaryOp::exp_: a.exp_(); return info.Env().Undefined();
    case UnaryOp::zero_: a.zero_(); return info.Env().Undefined();
    case UnaryOp::contiguous: r = a.contiguous(); break;
    case UnaryOp::clone: r = at::clone(a); break;
    case UnaryOp::erfinv_: a.erfinv_(); return info.Env().Undefined();
    case UnaryOp::signbit: r = at::signbit(a); break;
  }
  return Wrap(info.Env(), r);
}

static Napi::Value opCodes(const Napi::CallbackInfo& info) {
  auto out = Napi::Object::New(info.Env());
  auto binaryCodes = Napi::Object::New(info.Env());
  auto unaryCodes = Napi::Object::New(info.Env());
#define X(name) binaryCodes.Set(#name, static_cast<int>(BinaryOp::name));
  BINARY_OPS(X)
#undef X
#define X(name) unaryCodes.Set(#name, static_cast<int>(UnaryOp::name));
  UNARY_OPS(X)
#undef X
  out.Set("binary", binaryCodes);
  out.Set("unary", unaryCodes);
  return out;
}

// (a, b, alpha): a + alpha * b, and a - alpha * b
static Napi::Value addScaled(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::add(T(info, 0), T(info, 1), ScalarOf(info[2])));
}
// (self, min|null, max|null) with scalar bounds
static Napi::Value clamp(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::clamp(T(info, 0), OptScalar(info, 1), OptScalar(info, 2)));
}
static Napi::Value clamp_(const Napi::CallbackInfo& info) {
  T(info, 0).clamp_(OptScalar(info, 1), OptScalar(info, 2));
  return info.Env().Undefined();
}
// (cond, a, b, scalarMask): a and b tensors or numbers
static Napi::Value where(const Napi::CallbackInfo& info) {
  const at::Tensor& cond = T(info, 0);
  uint32_t mask = Mask(info, 3);
  return Wrap(info.Env(), at::where(cond, TensorOrScalar(info[1], IsScalar(info[1], mask, 0), cond.device()),
                                    TensorOrScalar(info[2], IsScalar(info[2], mask, 1), cond.device())));
}
// (self, exponentBase:number) -> base ** self
static Napi::Value powScalarBase(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::pow(ScalarOf(info[1]), T(info, 0)));
}
static Napi::Value softplus(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::softplus(T(info, 0), ScalarOf(info[1]), ScalarOf(info[2])));
}
static Napi::Value leakyRelu(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::leaky_relu(T(info, 0), ScalarOf(info[1])));
}

// Optimizer updates (in place). (self, t1, t2, value)
static Napi::Value addcmul_(const Napi::CallbackInfo& info) {
  T(info, 0).addcmul_(T(info, 1), T(info, 2), ScalarOf(info[3]));
  return info.Env().Undefined();
}
static Napi::Value addcdiv_(const Napi::CallbackInfo& info) {
  T(info, 0).addcdiv_(T(info, 1), T(info, 2), ScalarOf(info[3]));
  return info.Env().Undefined();
}
// (self, end, weight:number)
static Napi::Value lerp_(const Napi::CallbackInfo& info) {
  T(info, 0).lerp_(T(info, 1), ScalarOf(info[2]));
  return info.Env().Undefined();
}
static Napi::Value copy_(const Napi::CallbackInfo& info) {
  c10::NoGradGuard guard;  // copying into a leaf parameter is an update, not part of the graph
  T(info, 0).copy_(T(info, 1));
  return info.Env().Undefined();
}
static Napi::Value fill_(const Napi::CallbackInfo& info) {
  T(info, 0).fill_(ScalarOf(info[1]));
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Reductions. dims: number[] | null (all). (self, dims, keepdim, dtype|null)

static at::OptionalIntArrayRef Dims(const std::vector<int64_t>& dims, bool all) {
  if (all) return c10::nullopt;
  return at::IntArrayRef(dims);
}

#define REDUCE_WITH_DIMS(name, call)                                                   \
  static Napi::Value name(const Napi::CallbackInfo& info) {                            \
    const at::Tensor& self = T(info, 0);                                               \
    bool all = IsNullish(info[1]);                                                     \
    std::vector<int64_t> dims = all ? std::vector<int64_t>{} : IntList(info[1]);       \
    bool keepdim = B(info, 2);                                                         \
    (void)keepdim;                                                                     \
    return Wrap(info.Env(), call);                                                     \
  }

REDUCE_WITH_DIMS(sum, all ? at::sum(self, OptDtype(info, 3)) : at::sum(self, Dims(dims, all), keepdim, OptDtype(info, 3)))
REDUCE_WITH_DIMS(mean, all ? at::mean(self, OptDtype(info, 3)) : at::mean(self, Dims(dims, all), keepdim, OptDtype(info, 3)))
REDUCE_WITH_DIMS(amax, at::amax(self, dims, keepdim))
REDUCE_WITH_DIMS(amin, at::amin(self, dims, keepdim))
REDUCE_WITH_DIMS(logsumexp, at::logsumexp(self, all ? std::vector<int64_t>{} : dims, keepdim))
REDUCE_WITH_DIMS(prod, all ? at::prod(self, OptDtype(info, 3)) : at::prod(self, dims.at(0), keepdim, OptDtype(info, 3)))
// var/std: (self, dims|null, keepdim, unbiased)
REDUCE_WITH_DIMS(var, at::var(self, Dims(dims, all), B(info, 3), keepdim))
REDUCE_WITH_DIMS(std, at::std(self, Dims(dims, all), B(info, 3), keepdim))
#undef REDUCE_WITH_DIMS

// (self, ord, dims|null, keepdim)
static Napi::Value vectorNorm(const Napi::CallbackInfo& info) {
  bool all = IsNullish(info[2]);
  std::vector<int64_t> dims = all ? std::vector<int64_t>{} : IntList(info[2]);
  return Wrap(info.Env(), at::linalg_vector_norm(T(info, 0), ScalarOf(info[1]), Dims(dims, all), B(info, 3), c10::nullopt));
}
// (self, dim|null, keepdim)
static Napi::Value argmax(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::argmax(T(info, 0), OptI(info, 1), B(info, 2)));
}
static Napi::Value argmin(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::argmin(T(info, 0), OptI(info, 1), B(info, 2)));
}
// (self, dim, keepdim) -> [values, indices]
static Napi::Value maxDim(const Napi::CallbackInfo& info) {
  auto r = at::max(T(info, 0), I(info, 1), B(info, 2));
  return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
}
static Napi::Value minDim(const Napi::CallbackInfo& info) {
  auto r = at::min(T(info, 0), I(info, 1), B(info, 2));
  return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
}
static Napi::Value maxAll(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::max(T(info, 0))); }
static Napi::Value minAll(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::min(T(info, 0))); }
// (self, dim|null, keepdim)
static Napi::Value all(const Napi::CallbackInfo& info) {
  if (IsNullish(info[1])) return Wrap(info.Env(), at::all(T(info, 0)));
  return Wrap(info.Env(), at::all(T(info, 0), I(info, 1), B(info, 2)));
}
static Napi::Value any(const Napi::CallbackInfo& info) {
  if (IsNullish(info[1])) return Wrap(info.Env(), at::any(T(info, 0)));
  return Wrap(info.Env(), at::any(T(info, 0), I(info, 1), B(info, 2)));
}
// (self, dim, dtype|null)
static Napi::Value cumsum(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::cumsum(T(info, 0), I(info, 1), OptDtype(info, 2)));
}
// (self, k, dim, largest, sorted) -> [values, indices]
static Napi::Value topk(const Napi::CallbackInfo& info) {
  auto r = at::topk(T(info, 0), I(info, 1), I(info, 2), B(info, 3), B(info, 4));
  return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
}
// (self, dim, descending, stable) -> [values, indices]
static Napi::Value sort(const Napi::CallbackInfo& info) {
  auto r = at::sort(T(info, 0), B(info, 3), I(info, 1), B(info, 2));
  return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
}

// ---------------------------------------------------------------------------------------------
// Linear algebra

static Napi::Value matmul(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::matmul(T(info, 0), T(info, 1))); }
static Napi::Value bmm(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::bmm(T(info, 0), T(info, 1))); }
static Napi::Value mm(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::mm(T(info, 0), T(info, 1))); }
static Napi::Value outer(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::outer(T(info, 0), T(info, 1))); }
// Singular values of [.., M, N], descending (torch.linalg.svdvals).
static Napi::Value svdvals(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::linalg_svdvals(T(info, 0))); }
// (equation, tensors[])
static Napi::Value einsum(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::einsum(S(info, 0), TensorList(info[1])));
}

// ---------------------------------------------------------------------------------------------
// Shape and indexing

static Napi::Value view(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).view(IntList(info[1]))); }
static Napi::Value reshape(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).reshape(IntList(info[1]))); }
static Napi::Value permute(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).permute(IntList(info[1]))); }
static Napi::Value expand(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).expand(IntList(info[1]))); }
static Napi::Value repeat(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).repeat(IntList(info[1]))); }
static Napi::Value flip(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).flip(IntList(info[1]))); }
static Napi::Value transpose(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).transpose(I(info, 1), I(info, 2)));
}
static Napi::Value unsqueeze(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).unsqueeze(I(info, 1))); }
// (self, dim|null)
static Napi::Value squeeze(const Napi::CallbackInfo& info) {
  if (IsNullish(info[1])) return Wrap(info.Env(), T(info, 0).squeeze());
  return Wrap(info.Env(), T(info, 0).squeeze(I(info, 1)));
}
static Napi::Value flatten(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).flatten(I(info, 1), I(info, 2)));
}
static Napi::Value movedim(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).movedim(IntList(info[1]), IntList(info[2])));
}
// (tensors[], dim)
static Napi::Value cat(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::cat(TensorList(info[0]), I(info, 1))); }
static Napi::Value stack(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::stack(TensorList(info[0]), I(info, 1))); }
// (self, sizeOrSizes, dim)
static Napi::Value split(const Napi::CallbackInfo& info) {
  const at::Tensor& self = T(info, 0);
  if (info[1].IsArray()) return WrapList(info.Env(), self.split_with_sizes(IntList(info[1]), I(info, 2)));
  return WrapList(info.Env(), self.split(I(info, 1), I(info, 2)));
}
static Napi::Value chunk(const Napi::CallbackInfo& info) {
  return WrapList(info.Env(), T(info, 0).chunk(I(info, 1), I(info, 2)));
}
static Napi::Value unbind(const Napi::CallbackInfo& info) { return WrapList(info.Env(), T(info, 0).unbind(I(info, 1))); }
// (self, dim, start, length)
static Napi::Value narrow(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).narrow(I(info, 1), I(info, 2), I(info, 3)));
}
// (self, dim, start|null, end|null, step)
static Napi::Value slice(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).slice(I(info, 1), OptI(info, 2), OptI(info, 3), I(info, 4)));
}
// (self, dim, index)
static Napi::Value select(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).select(I(info, 1), I(info, 2)));
}
// (self, dim, index)
static Napi::Value indexSelect(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::index_select(T(info, 0), I(info, 1), T(info, 2)));
}
static Napi::Value gather(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::gather(T(info, 0), I(info, 1), T(info, 2)));
}
// (self, dim, index, src tensor|number, reduce "none"|"add", srcIsScalar)
static Napi::Value scatter(const Napi::CallbackInfo& info) {
  const at::Tensor& self = T(info, 0);
  std::string reduce = S(info, 4);
  if (reduce == "add") return Wrap(info.Env(), at::scatter_add(self, I(info, 1), T(info, 2), T(info, 3)));
  if (IsScalar(info[3], Mask(info, 5), 0)) return Wrap(info.Env(), at::scatter(self, I(info, 1), T(info, 2), ScalarOf(info[3])));
  return Wrap(info.Env(), at::scatter(self, I(info, 1), T(info, 2), T(info, 3)));
}
// (self, mask, value tensor|number, valueIsScalar)
static Napi::Value maskedFill(const Napi::CallbackInfo& info) {
  if (IsScalar(info[2], Mask(info, 3), 0)) return Wrap(info.Env(), at::masked_fill(T(info, 0), T(info, 1), ScalarOf(info[2])));
  return Wrap(info.Env(), at::masked_fill(T(info, 0), T(info, 1), T(info, 2)));
}
static Napi::Value maskedFill_(const Napi::CallbackInfo& info) {
  T(info, 0).masked_fill_(T(info, 1), ScalarOf(info[2]));
  return info.Env().Undefined();
}

static c10::List<c10::optional<at::Tensor>> IndexList(const Napi::Value& v) {
  auto arr = v.As<Napi::Array>();
  c10::List<c10::optional<at::Tensor>> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value e = arr.Get(i);
    if (IsNullish(e)) out.push_back(c10::nullopt);
    else out.push_back(Lookup(e));
  }
  return out;
}
// Advanced indexing: (self, (Tensor|null)[]) — x[idx0, :, idx2] with null for a full slice.
static Napi::Value index(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::index(T(info, 0), IndexList(info[1])));
}
// (self, indices, values, accumulate, valuesIsScalar) -> new tensor
static Napi::Value indexPut(const Napi::CallbackInfo& info) {
  const at::Tensor& self = T(info, 0);
  at::Tensor values = TensorOrScalar(info[2], IsScalar(info[2], Mask(info, 4), 0), self.device());
  return Wrap(info.Env(), at::index_put(self, IndexList(info[1]), values.to(self.scalar_type()), B(info, 3)));
}
static Napi::Value indexPut_(const Napi::CallbackInfo& info) {
  const at::Tensor& self = T(info, 0);
  at::Tensor values = TensorOrScalar(info[2], IsScalar(info[2], Mask(info, 4), 0), self.device());
  T(info, 0).index_put_(IndexList(info[1]), values.to(self.scalar_type()), B(info, 3));
  return info.Env().Undefined();
}
static Napi::Value triu(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::triu(T(info, 0), I(info, 1))); }
static Napi::Value tril(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::tril(T(info, 0), I(info, 1))); }
// (self, pad[], mode, value)
static Napi::Value pad(const Napi::CallbackInfo& info) {
  std::string mode = S(info, 2);
  c10::optional<double> value = mode == "constant" ? OptD(info, 3) : c10::nullopt;
  return Wrap(info.Env(), at::pad(T(info, 0), IntList(info[1]), mode, value));
}
// (self, shifts[], dims[])
static Napi::Value roll(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::roll(T(info, 0), IntList(info[1]), IntList(info[2])));
}
// (self, sorted, returnInverse) -> [values, inverse]
static Napi::Value unique(const Napi::CallbackInfo& info) {
  auto r = at::_unique(T(info, 0), B(info, 1), true);
  return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
}
static Napi::Value nonzero(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::nonzero(T(info, 0))); }
// (sortedSequence, values, right)
static Napi::Value searchsorted(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::searchsorted(T(info, 0), T(info, 1), false, B(info, 2)));
}

void InitOps(Napi::Env env, Napi::Object exports) {
  MINDSEYE_EXPORT(exports, opCodes);
  MINDSEYE_EXPORT(exports, binary);
  MINDSEYE_EXPORT(exports, binaryInplace);
  MINDSEYE_EXPORT(exports, unary);
  MINDSEYE_EXPORT(exports, addScaled);
  MINDSEYE_EXPORT(exports, clamp);
  MINDSEYE_EXPORT(exports, clamp_);
  MINDSEYE_EXPORT(exports, where);
  MINDSEYE_EXPORT(exports, powScalarBase);
  MINDSEYE_EXPORT(exports, softplus);
  MINDSEYE_EXPORT(exports, leakyRelu);
  MINDSEYE_EXPORT(exports, addcmul_);
  MINDSEYE_EXPORT(exports, addcdiv_);
  MINDSEYE_EXPORT(exports, lerp_);
  MINDSEYE_EXPORT(exports, copy_);
  MINDSEYE_EXPORT(exports, fill_);
  MINDSEYE_EXPORT(exports, sum);
  MINDSEYE_EXPORT(exports, mean);
  MINDSEYE_EXPORT(exports, amax);
  MINDSEYE_EXPORT(exports, amin);
  MINDSEYE_EXPORT(exports, logsumexp);
  MINDSEYE_EXPORT(exports, prod);
  MINDSEYE_EXPORT(exports, var);
  MINDSEYE_EXPORT(exports, std);
  MINDSEYE_EXPORT(exports, vectorNorm);
  MINDSEYE_EXPORT(exports, argmax);
  MINDSEYE_EXPORT(exports, argmin);
  MINDSEYE_EXPORT(exports, maxDim);
  MINDSEYE_EXPORT(exports, minDim);
  MINDSEYE_EXPORT(exports, maxAll);
  MINDSEYE_EXPORT(exports, minAll);
  MINDSEYE_EXPORT(exports, all);
  MINDSEYE_EXPORT(exports, any);
  MINDSEYE_EXPORT(exports, cumsum);
  MINDSEYE_EXPORT(exports, topk);
  MINDSEYE_EXPORT(exports, sort);
  MINDSEYE_EXPORT(exports, matmul);
  MINDSEYE_EXPORT(exports, bmm);
  MINDSEYE_EXPORT(exports, mm);
  MINDSEYE_EXPORT(exports, outer);
  MINDSEYE_EXPORT(exports, einsum);
  MINDSEYE_EXPORT(exports, svdvals);
  MINDSEYE_EXPORT(exports, view);
  MINDSEYE_EXPORT(exports, reshape);
  MINDSEYE_EXPORT(exports, permute);
  MINDSEYE_EXPORT(exports, expand);
  MINDSEYE_EXPORT(exports, repeat);
  MINDSEYE_EXPORT(exports, flip);
  MINDSEYE_EXPORT(exports, transpose);
  MINDSEYE_EXPORT(exports, unsqueeze);
  MINDSEYE_EXPORT(exports, squeeze);
  MINDSEYE_EXPORT(exports, flatten);
  MINDSEYE_EXPORT(exports, movedim);
  MINDSEYE_EXPORT(exports, cat);
  MINDSEYE_EXPORT(exports, stack);
  MINDSEYE_EXPORT(exports, split);
  MINDSEYE_EXPORT(exports, chunk);
  MINDSEYE_EXPORT(exports, unbind);
  MINDSEYE_EXPORT(exports, narrow);
  MINDSEYE_EXPORT(exports, slice);
  MINDSEYE_EXPORT(exports, select);
  MINDSEYE_EXPORT(exports, indexSelect);
  MINDSEYE_EXPORT(exports, gather);
  MINDSEYE_EXPORT(exports, scatter);
  MINDSEYE_EXPORT(exports, maskedFill);
  MINDSEYE_EXPORT(exports, maskedFill_);
  MINDSEYE_EXPORT(exports, index);
  MINDSEYE_EXPORT(exports, indexPut);
  MINDSEYE_EXPORT(exports, indexPut_);
  MINDSEYE_EXPORT(exports, triu);
  MINDSEYE_EXPORT(exports, tril);
  MINDSEYE_EXPORT(exports, pad);
  MINDSEYE_EXPORT(exports, roll);
  MINDSEYE_EXPORT(exports, unique);
  MINDSEYE_EXPORT(exports, nonzero);
  MINDSEYE_EXPORT(exports, searchsorted);
}

}  // namespace mindseye
