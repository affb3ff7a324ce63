// Functional neural-network ops (torch.nn.functional): native ATen kernels where libtorch has
// them, composed from ATen ops where this libtorch version does not (rms_norm before 2.4,
// scaled_dot_product_attention before 2.0).
#include "common.h"

#include <torch/version.h>

#include <limits>

namespace mindseye {

// Reduction codes, as ATen's at::Reduction enum.
static int64_t Reduction(const Napi::CallbackInfo& info, size_t i) {
  std::string r = S(info, i);
  if (r == "none") return at::Reduction::None;
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  throw Napi::Error::New(info.Env(), "unknown reduction '" + r + "' (expected 'none', 'mean' or 'sum')");
}

// (input, weight, bias|null)
static Napi::Value linear(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::linear(T(info, 0), T(info, 1), OptT(info, 2)));
}
// (weight, indices, paddingIdx)
static Napi::Value embedding(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::embedding(T(info, 0), T(info, 1), I(info, 2)));
}
// (input, normalizedShape[], weight|null, bias|null, eps)
static Napi::Value layerNorm(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::layer_norm(T(info, 0), IntList(info[1]), OptT(info, 2), OptT(info, 3), D(info, 4)));
}
// (input, weight|null, eps): Qwen2/LLaMA RMSNorm — normalised in at least float32 (float64
// stays float64), cast back to the input dtype, then scaled by the weight, as HF's Qwen2RMSNorm.
static Napi::Value rmsNorm(const Napi::CallbackInfo& info) {
  const at::Tensor& x = T(info, 0);
  at::Tensor xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + D(info, 2));
  y = y.to(x.scalar_type());
  auto w = OptT(info, 1);
  return Wrap(info.Env(), w ? *w * y : y);
}
// (input, dim, dtype|null)
static Napi::Value softmax(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::softmax(T(info, 0), I(info, 1), OptDtype(info, 2)));
}
static Napi::Value logSoftmax(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::log_softmax(T(info, 0), I(info, 1), OptDtype(info, 2)));
}
// (input [N, C] | [N, C, d..], target [N] int64 | probabilities, weight|null, reduction, ignoreIndex, labelSmoothing)
static Napi::Value crossEntropy(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::cross_entropy_loss(T(info, 0), T(info, 1), OptT(info, 2), Reduction(info, 3), I(info, 4),
                                                 D(info, 5)));
}
// (input, target, reduction)
static Napi::Value mseLoss(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::mse_loss(T(info, 0), T(info, 1), Reduction(info, 2)));
}
// (input, target, reduction, beta)
static Napi::Value smoothL1Loss(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::smooth_l1_loss(T(info, 0), T(info, 1), Reduction(info, 2), D(info, 3)));
}
// (input logits, target, reduction, posWeight|null)
static Napi::Value binaryCrossEntropyWithLogits(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::binary_cross_entropy_with_logits(T(info, 0), T(info, 1), c10::nullopt, OptT(info, 3),
                                                               Reduction(info, 2)));
}
// (x1, x2, dim, eps)
static Napi::Value cosineSimilarity(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::cosine_similarity(T(info, 0), T(info, 1), I(info, 2), D(info, 3)));
}
// (input, p, dim, eps): x / max(||x||_p, eps), as torch.nn.functional.normalize
static Napi::Value normalize(const Napi::CallbackInfo& info) {
  const at::Tensor& x = T(info, 0);
  at::Tensor n = at::linalg_vector_norm(x, ScalarOf(info[1]), at::IntArrayRef{I(info, 2)}, /*keepdim=*/true, c10::nullopt);
  return Wrap(info.Env(), x / n.clamp_min(D(info, 3)).expand_as(x));
}
// (input, p, train)
static Napi::Value dropout(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::dropout(T(info, 0), D(info, 1), B(info, 2)));
}
// (input, weight, bias|null, stride[], padding[], dilation[], groups)
static Napi::Value conv2d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::conv2d(T(info, 0), T(info, 1), OptT(info, 2), IntList(info[3]), IntList(info[4]),
                                     IntList(info[5]), I(info, 6)));
}
static Napi::Value conv3d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::conv3d(T(info, 0), T(info, 1), OptT(info, 2), IntList(info[3]), IntList(info[4]),
                                     IntList(info[5]), I(info, 6)));
}
// (input, outputSize[2])
static Napi::Value adaptiveAvgPool2d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::adaptive_avg_pool2d(T(info, 0), IntList(info[1])));
}
// (input, kernel[], stride[], padding[])
static Napi::Value avgPool2d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::avg_pool2d(T(info, 0), IntList(info[1]), IntList(info[2]), IntList(info[3])));
}
static Napi::Value maxPool2d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::max_pool2d(T(info, 0), IntList(info[1]), IntList(info[2]), IntList(info[3])));
}
// (input [N,C,H,W], size[2], mode, alignCorners, antialias)
static Napi::Value interpolate(const Napi::CallbackInfo& info) {
  const at::Tensor& x = T(info, 0);
  auto size = IntList(info[1]);
  std::string mode = S(info, 2);
  bool alignCorners = B(info, 3);
  bool antialias = B(info, 4);
  if (x.dim() != 4) throw Napi::Error::New(info.Env(), "interpolate: expected a 4-D [N, C, H, W] input, got " + c10::str(x.sizes()));
  if (mode == "nearest") return Wrap(info.Env(), at::upsample_nearest2d(x, size, c10::nullopt, c10::nullopt));
  if (mode == "bilinear") {
    return Wrap(info.Env(), antialias ? at::_upsample_bilinear2d_aa(x, size, alignCorners, c10::nullopt, c10::nullopt)
                                      : at::upsample_bilinear2d(x, size, alignCorners, c10::nullopt, c10::nullopt));
  }
  if (mode == "bicubic") {
    return Wrap(info.Env(), antialias ? at::_upsample_bicubic2d_aa(x, size, alignCorners, c10::nullopt, c10::nullopt)
                                      : at::upsample_bicubic2d(x, size, alignCorners, c10::nullopt, c10::nullopt));
  }
  throw Napi::Error::New(info.Env(), "interpolate: unknown mode '" + mode + "' (expected nearest, bilinear or bicubic)");
}

// (q [.., L, E], k [.., S, E], v [.., S, Ev], mask|null (bool: true = attend; float: added), dropoutP, causal, scale|null)
// Same semantics as torch.nn.functional.scaled_dot_product_attention; the causal mask is
// top-left aligned (query i sees keys 0..i), as there.
static Napi::Value scaledDotProductAttention(const Napi::CallbackInfo& info) {
  const at::Tensor& q = T(info, 0);
  const at::Tensor& k = T(info, 1);
  const at::Tensor& v = T(info, 2);
  auto mask = OptT(info, 3);
  double dropoutP = D(info, 4);
  bool causal = B(info, 5);
  auto scale = OptD(info, 6);
  if (causal && mask) {
    throw Napi::Error::New(info.Env(), "scaledDotProductAttention: pass either a mask or causal=true, not both (as PyTorch)");
  }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  return Wrap(info.Env(), at::scaled_dot_product_attention(q, k, v, mask, dropoutP, causal, scale));
#else
  double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * s;  // [.., L, S]
  // Masks are added as {0, -inf} float tensors (built without grad): an addition costs nothing
  // in backward, where masked_fill on the scores would add a pass.
  const double ninf = -std::numeric_limits<double>::infinity();
  if (causal) {
    int64_t L = q.size(-2), S = k.size(-2);
    at::Tensor keep = at::ones({L, S}, q.options().dtype(at::kBool)).tril();
    scores = scores + at::zeros({L, S}, scores.options()).masked_fill(keep.logical_not(), ninf);
  } else if (mask) {
    if (mask->scalar_type() == at::kBool) {
      scores = scores + at::zeros(mask->sizes(), scores.options()).masked_fill(mask->logical_not(), ninf);
    } else {
      scores = scores + *mask;
    }
  }
  at::Tensor attn = at::softmax(scores, -1);
  if (dropoutP > 0) attn = at::dropout(attn, dropoutP, true);
  return Wrap(info.Env(), at::matmul(attn, v));
#endif
}

void InitNnOps(Napi::Env env, Napi::Object exports) {
  MINDSEYE_EXPORT(exports, linear);
  MINDSEYE_EXPORT(exports, embedding);
  MINDSEYE_EXPORT(exports, layerNorm);
  MINDSEYE_EXPORT(exports, rmsNorm);
  MINDSEYE_EXPORT(exports, softmax);
  MINDSEYE_EXPORT(exports, logSoftmax);
  MINDSEYE_EXPORT(exports, crossEntropy);
  MINDSEYE_EXPORT(exports, mseLoss);
  MINDSEYE_EXPORT(exports, smoothL1Loss);
  MINDSEYE_EXPORT(exports, binaryCrossEntropyWithLogits);
  MINDSEYE_EXPORT(exports, cosineSimilarity);
  MINDSEYE_EXPORT(exports, normalize);
  MINDSEYE_EXPORT(exports, dropout);
  MINDSEYE_EXPORT(exports, conv2d);
  MINDSEYE_EXPORT(exports, conv3d);
  MINDSEYE_EXPORT(exports, adaptiveAvgPool2d);
  MINDSEYE_EXPORT(exports, avgPool2d);
  MINDSEYE_EXPORT(exports, maxPool2d);
  MINDSEYE_EXPORT(exports, interpolate);
  MINDSEYE_EXPORT(exports, scaledDotProductAttention);
}

}  // namespace mindseye
