// Autograd of every differentiable op against central finite differences (float64, small
// shapes). Inputs keep away from kinks and ties (abs at 0, clamp at its bounds, max with equal
// entries) where the derivative is not defined.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { torch, F, Tensor } from "./index.js";
import { gradcheck, type GradcheckOptions } from "./testing/gradcheck.js";

const liveAtStart = torch.memory().tensors;
const f64 = { dtype: "float64" } as const;
const i64 = { dtype: "int64" } as const;

/** Standard-normal float64 leaf requiring grad, from its own seed. */
function randn(shape: number[], seed: number): Tensor {
  return torch.randn(shape, { dtype: "float64", generator: new torch.Generator(seed) }).requiresGrad_();
}
/** Uniform in [lo, hi), float64 leaf requiring grad. */
function uniform(shape: number[], lo: number, hi: number, seed: number): Tensor {
  return torch.rand(shape, { dtype: "float64", generator: new torch.Generator(seed) }).mul(hi - lo).add(lo).requiresGrad_();
}
/** |x| in [0.3, 1.5) with random signs: away from 0. */
function awayFromZero(shape: number[], seed: number): Tensor {
  const g = new torch.Generator(seed);
  const mag = torch.rand(shape, { dtype: "float64", generator: g }).mul(1.2).add(0.3);
  const sign = torch.where(torch.rand(shape, { generator: g }).lt(0.5), -1, 1);
  return mag.mul(sign).requiresGrad_();
}
/** A float64 leaf requiring grad from explicit (distinct) values. */
function leaf(data: number[] | number[][] | number[][][], shape?: number[]): Tensor {
  return torch.tensor(data, shape ? { ...f64, shape } : f64).requiresGrad_();
}

/** One gradcheck per test, its tensors freed at the end. */
function check(name: string, fn: (...xs: Tensor[]) => Tensor, inputs: () => Tensor[], opts?: GradcheckOptions): void {
  it(name, () => {
    torch.scope(() => {
      const report = gradcheck(fn, inputs(), opts);
      assert.ok(report.comparisons > 0);
    });
  });
}

// ---------------------------------------------------------------------------------------------

describe("gradcheck itself", () => {
  it("passes a correct gradient and reports what it compared", () => {
    torch.scope(() => {
      const a = randn([2, 3], 1), b = randn([3, 2], 2);
      const r = gradcheck((x, y) => x.matmul(y), [a, b]);
      assert.equal(r.mode, "jacobian");
      assert.deepEqual(r.checkedInputs, [0, 1]);
      assert.equal(r.comparisons, (6 + 6) * 4, "every input element against every output element");
      assert.ok(r.maxAbsError < 1e-8);
      const big = gradcheck((x) => x.exp(), [randn([5, 6], 3)]);
      assert.equal(big.mode, "projection");
      assert.equal(big.comparisons, 30);
    });
  });

  it("catches a wrong gradient: part of the path through .detach() (Jacobian mode)", () => {
    torch.scope(() => {
      // d(x·x)/dx = 2x, but autograd sees only x·const and reports x
      const x = leaf([1, 2, 3]);
      assert.throws(
        () => gradcheck((t) => t.mul(t.detach()), [x]),
        /gradient mismatch for input 0 \(shape \[3\]\), element 0, output element 0: analytic 1 vs numeric 2\.0000/,
      );
    });
  });

  it("catches a wrong gradient in projection mode and names the input", () => {
    torch.scope(() => {
      const a = randn([4, 5], 4), b = randn([4, 5], 5);
      // b is used only through .detach(): its analytic gradient is zero, the numeric one is a
      assert.throws(() => gradcheck((x, y) => x.mul(y.detach()), [a, b]), /input 1 \(shape \[4, 5\]\), element 0 \(projected output\): analytic 0 vs numeric/);
      // exp computed on a detached copy: gradient exp(x)·x' is lost, only the ·x factor remains
      assert.throws(() => gradcheck((x) => x.detach().exp().mul(x), [a]), /input 0.*analytic .* vs numeric/);
    });
  });

  it("catches a small error that only the tolerance separates", () => {
    torch.scope(() => {
      // out = x + 1e-3·detach(x)²: the missing term 2e-3·x is well above atol 1e-5
      const x = leaf([0.5, 1, 1.5]);
      assert.throws(() => gradcheck((t) => t.add(t.detach().square().mul(1e-3)), [x]), /gradient mismatch/);
      // and passes when the tolerance is loosened past it
      gradcheck((t) => t.add(t.detach().square().mul(1e-3)), [x], { atol: 1e-2 });
    });
  });

  it("rejects inputs it cannot check, and passes non-differentiable inputs through", () => {
    torch.scope(() => {
      const f32 = torch.ones([2]).requiresGrad_();
      assert.throws(() => gradcheck((t) => t.mul(2), [f32]), /input 0 requires grad but is float32/);
      assert.throws(() => gradcheck((t) => t.mul(2), [torch.ones([2], f64)]), /no input requires grad/);
      const idx = torch.tensor([1, 0, 1], i64);
      const r = gradcheck((i, w) => F.embedding(i, w), [idx, randn([2, 3], 6)]);
      assert.deepEqual(r.checkedInputs, [1]);
    });
  });

  it("frees what it creates", () => {
    const before = torch.memory().tensors;
    torch.scope(() => { gradcheck((t) => t.sin(), [randn([3], 7)]); });
    assert.equal(torch.memory().tensors, before);
  });
});

// ---------------------------------------------------------------------------------------------

describe("arithmetic", () => {
  check("add (broadcast [2, 3] + [3])", (a, b) => a.add(b), () => [randn([2, 3], 1), randn([3], 2)]);
  check("add with alpha", (a, b) => a.add(b, -2.5), () => [randn([2, 3], 1), randn([2, 3], 2)]);
  check("add a number", (a) => a.add(1.5), () => [randn([3], 1)]);
  check("sub (broadcast [2, 1] − [3])", (a, b) => a.sub(b), () => [randn([2, 1], 3), randn([3], 4)]);
  check("mul", (a, b) => a.mul(b), () => [randn([2, 3], 5), randn([2, 3], 6)]);
  check("div", (a, b) => a.div(b), () => [randn([2, 3], 7), awayFromZero([2, 3], 8)]);
  check("div by a number", (a) => a.div(3), () => [randn([4], 7)]);
  check("pow tensor ^ number", (a) => a.pow(2.5), () => [uniform([2, 3], 0.5, 2, 9)]);
  check("pow tensor ^ negative integer", (a) => a.pow(-2), () => [uniform([4], 0.5, 2, 9)]);
  check("pow tensor ^ tensor (positive base)", (a, b) => a.pow(b), () => [uniform([2, 3], 0.5, 2, 10), randn([2, 3], 11)]);
  check("pow number ^ tensor", (b) => torch.pow(2, b), () => [randn([4], 12)]);
  check("neg, reciprocal, square", (a) => a.neg().add(a.reciprocal()).add(a.square()), () => [awayFromZero([5], 13)]);
});

describe("unary", () => {
  check("exp", (a) => a.exp(), () => [randn([2, 3], 1)]);
  check("log", (a) => a.log(), () => [uniform([2, 3], 0.2, 3, 2)]);
  check("sqrt", (a) => a.sqrt(), () => [uniform([2, 3], 0.2, 3, 3)]);
  check("rsqrt", (a) => a.rsqrt(), () => [uniform([2, 3], 0.2, 3, 4)]);
  check("abs (away from 0)", (a) => a.abs(), () => [awayFromZero([2, 3], 5)]);
  check("clamp (away from the bounds)", (a) => a.clamp(-0.5, 0.5), () => [leaf([-1.2, -0.7, -0.3, 0.1, 0.4, 0.9])]);
  check("clampMin", (a) => a.clampMin(0.25), () => [leaf([-1.2, 0.1, 0.4, 0.9])]);
  check("sin, cos, erf, log1p, expm1", (a) => a.sin().add(a.cos()).add(a.erf()).add(a.log1p()).add(a.expm1()), () => [uniform([5], -0.5, 2, 6)]);
  check("where (both branches)", (c, a, b) => torch.where(c, a, b), () => [torch.tensor([[true, false, true], [false, false, true]]), randn([2, 3], 7), randn([2, 3], 8)]);
  check("where with a number branch", (a) => torch.where(a.gt(0), a, 0.5), () => [awayFromZero([6], 9)]);
  check("maximum (no ties)", (a, b) => a.maximum(b), () => [leaf([1, -2, 3, 0.5]), leaf([0, 1, 2.5, 2])]);
  check("minimum (no ties)", (a, b) => torch.minimum(a, b), () => [leaf([1, -2, 3, 0.5]), leaf([0, 1, 2.5, 2])]);
  check("maximum with a number", (a) => a.maximum(0.25), () => [leaf([1, -2, 0.3, 0.1])]);
});

describe("activations", () => {
  check("relu (away from 0)", (a) => F.relu(a), () => [awayFromZero([2, 4], 1)]);
  check("gelu exact", (a) => F.gelu(a), () => [randn([2, 4], 2)]);
  check("gelu tanh", (a) => F.gelu(a, "tanh"), () => [randn([2, 4], 3)]);
  check("silu", (a) => F.silu(a), () => [randn([2, 4], 4)]);
  check("sigmoid", (a) => F.sigmoid(a), () => [randn([2, 4], 5)]);
  check("tanh", (a) => F.tanh(a), () => [randn([2, 4], 6)]);
  check("softplus", (a) => F.softplus(a), () => [randn([2, 4], 7)]);
  check("softplus with beta and threshold (away from it)", (a) => F.softplus(a, 2, 1), () => [leaf([-1, 0.2, 0.4, 0.8, 1.5])]);
  check("logSigmoid", (a) => F.logSigmoid(a), () => [randn([5], 8)]);
  check("leakyRelu (away from 0)", (a) => F.leakyRelu(a, 0.1), () => [awayFromZero([5], 9)]);
});

// ---------------------------------------------------------------------------------------------

describe("reductions", () => {
  check("sum over all", (a) => a.sum(), () => [randn([2, 3], 1)]);
  check("sum over a dim, keepdim", (a) => a.sum(1, { keepdim: true }), () => [randn([2, 3], 2)]);
  check("mean over dims", (a) => a.mean([0, 2]), () => [randn([2, 3, 2], 3)]);
  check("prod", (a) => a.prod(1), () => [awayFromZero([2, 3], 4)]);
  check("amax over a dim (no ties)", (a) => a.amax(1), () => [leaf([[1, 3, 2], [0.5, -1, 0]])]);
  check("amax over all (no ties)", (a) => a.amax(), () => [leaf([[1, 3, 2], [0.5, -1, 0]])]);
  check("max values along a dim (no ties)", (a) => a.max(0).values, () => [leaf([[1, 3, 2], [0.5, -1, 4]])]);
  check("min values along a dim (no ties)", (a) => a.min(1, { keepdim: true }).values, () => [leaf([[1, 3, 2], [0.5, -1, 4]])]);
  check("var unbiased", (a) => a.var(1), () => [randn([2, 4], 5)]);
  check("var biased, all", (a) => a.var(null, { unbiased: false }), () => [randn([2, 3], 6)]);
  check("std unbiased", (a) => a.std(0, { keepdim: true }), () => [randn([3, 2], 7)]);
  check("std biased", (a) => a.std(1, { unbiased: false }), () => [randn([2, 4], 8)]);
  check("norm p = 2", (a) => a.norm(), () => [randn([2, 3], 9)]);
  check("norm p = 2 over a dim", (a) => a.norm(2, 1), () => [randn([2, 3], 10)]);
  check("norm p = 1 (away from 0)", (a) => a.norm(1, 0), () => [awayFromZero([3, 2], 11)]);
  check("norm p = 3", (a) => a.norm(3), () => [awayFromZero([4], 11)]);
  check("logsumexp", (a) => a.logsumexp(1), () => [randn([2, 4], 12)]);
  check("logsumexp over dims, keepdim", (a) => a.logsumexp([0, 1], { keepdim: true }), () => [randn([2, 3], 13)]);
  check("cumsum", (a) => a.cumsum(1), () => [randn([2, 4], 14)]);
  check("topk values", (a) => a.topk(2, 1).values, () => [randn([2, 5], 15)]);
  check("topk smallest values", (a) => a.topk(2, 0, { largest: false }).values, () => [randn([4, 2], 16)]);
  check("sort values", (a) => a.sort(1).values, () => [randn([2, 4], 17)]);
  check("sort descending values", (a) => a.sort(0, { descending: true }).values, () => [randn([4, 2], 18)]);
});

describe("linear algebra", () => {
  check("matmul 2D", (a, b) => a.matmul(b), () => [randn([2, 3], 1), randn([3, 2], 2)]);
  check("matmul batched with broadcast", (a, b) => a.matmul(b), () => [randn([2, 2, 3], 3), randn([3, 2], 4)]);
  check("matmul matrix-vector", (a, b) => a.matmul(b), () => [randn([2, 3], 5), randn([3], 6)]);
  check("bmm", (a, b) => torch.bmm(a, b), () => [randn([2, 2, 3], 7), randn([2, 3, 2], 8)]);
  check("mm, outer", (a, b, c) => a.mm(b).add(torch.outer(c, c)), () => [randn([2, 3], 9), randn([3, 2], 10), randn([2], 11)]);
  check("einsum bij,bjk->bik", (a, b) => torch.einsum("bij,bjk->bik", a, b), () => [randn([2, 2, 3], 12), randn([2, 3, 2], 13)]);
  check("einsum trace and row dot", (a, b) => torch.einsum("ii->", a).add(torch.einsum("ij,ij->i", a, b)), () => [randn([3, 3], 14), randn([3, 3], 15)]);
  check("linalg.svdvals (distinct singular values)", (a) => torch.linalg.svdvals(a), () => [randn([3, 2], 16)]);
});

// ---------------------------------------------------------------------------------------------

describe("shape and indexing", () => {
  const w = (n: number) => torch.arange(1, n + 1).double(); // distinct weights make a permutation visible
  check("view", (a) => a.view(3, 2).mul(w(6).view(3, 2)), () => [randn([2, 3], 1)]);
  check("reshape of a transposed view", (a) => a.t().reshape(6).mul(w(6)), () => [randn([2, 3], 2)]);
  check("permute", (a) => a.permute(2, 0, 1).contiguous().mul(w(12).view(2, 2, 3)), () => [randn([2, 3, 2], 3)]);
  check("transpose", (a) => a.transpose(0, 1).mul(w(6).view(3, 2)), () => [randn([2, 3], 4)]);
  check("unsqueeze, squeeze", (a) => a.unsqueeze(0).unsqueeze(-1).mul(2).squeeze(), () => [randn([2, 3], 5)]);
  check("squeeze one dim", (a) => a.squeeze(1).mul(w(3)), () => [randn([3, 1], 5)]);
  check("expand (gradients sum over the copies)", (a) => a.expand(2, 3, 2).mul(w(12).view(2, 3, 2)), () => [randn([3, 1], 6)]);
  check("repeat", (a) => a.repeat(2, 2).mul(w(12).view(2, 6)), () => [randn([1, 3], 7)]);
  check("flatten", (a) => a.flatten(1).mul(w(6).view(1, 6)), () => [randn([1, 2, 3], 8)]);
  check("cat", (a, b) => torch.cat([a, b], 1).mul(w(10).view(2, 5)), () => [randn([2, 2], 9), randn([2, 3], 10)]);
  check("stack", (a, b) => torch.stack([a, b], 1).mul(w(12).view(3, 2, 2)), () => [randn([3, 2], 11), randn([3, 2], 12)]);
  check("split by sizes", (a) => torch.cat(a.split([1, 2], 1).map((t, i) => t.mul(i + 2)), 1), () => [randn([2, 3], 13)]);
  check("split by size", (a) => torch.stack(a.split(2).map((t, i) => t.sum().mul(i + 1))), () => [randn([5], 14)]);
  check("chunk", (a) => torch.stack(a.chunk(3, 1).map((t, i) => t.square().sum().mul(i + 1))), () => [randn([2, 6], 15)]);
  check("narrow", (a) => a.narrow(1, 1, 2).mul(w(4).view(2, 2)), () => [randn([2, 4], 16)]);
  check("slice with a negative start and a step", (a) => a.slice(0, -5, null, 2).mul(w(3)), () => [randn([6], 17)]);
  check("select", (a) => a.select(1, -1).mul(w(2)), () => [randn([2, 3], 18)]);
  check("indexSelect (repeated indices accumulate)", (a) => a.indexSelect(0, torch.tensor([2, 0, 2], i64)).mul(w(6).view(3, 2)), () => [randn([3, 2], 19)]);
  check("gather", (a) => a.gather(1, torch.tensor([[2, 0], [1, 1]], i64)).mul(w(4).view(2, 2)), () => [randn([2, 3], 20)]);
  check("scatter (self and src)", (a, s) => a.scatter(1, torch.tensor([[2, 0], [1, 2]], i64), s).mul(w(6).view(2, 3)), () => [randn([2, 3], 21), randn([2, 2], 22)]);
  check("scatterAdd (self and src)", (a, s) => a.scatterAdd(0, torch.tensor([[1, 0, 1]], i64), s).mul(w(6).view(2, 3)), () => [randn([2, 3], 23), randn([1, 3], 24)]);
  check("maskedFill", (a) => a.maskedFill(torch.tensor([[true, false, false], [false, true, false]]), 0.5).mul(w(6).view(2, 3)), () => [randn([2, 3], 25)]);
  check("index by tensors with a null (full slice)", (a) => a.index([null, torch.tensor([2, 0, 2], i64)]).mul(w(6).view(2, 3)), () => [randn([2, 3], 26)]);
  check("index by two tensors", (a) => a.index([torch.tensor([0, 1, 1], i64), torch.tensor([2, 0, 2], i64)]).mul(w(3)), () => [randn([2, 3], 27)]);
  check("index by a bool mask", (a) => a.index([torch.tensor([[true, false, true], [false, true, true]])]).mul(w(4)), () => [randn([2, 3], 28)]);
  check("indexPut (self and values, accumulate)", (a, v) => a.indexPut([torch.tensor([0, 2, 0], i64)], v, true).mul(w(3)), () => [randn([3], 29), randn([3], 30)]);
  check("triu", (a) => a.triu(), () => [randn([3, 3], 31)]);
  check("tril with an offset", (a) => torch.tril(a, -1).add(a.mul(0.5)), () => [randn([3, 3], 32)]);
  check("pad constant", (a) => F.pad(a, [1, 2, 0, 1], "constant", 0.5).mul(w(15).view(3, 5)), () => [randn([2, 2], 33)]);
  check("pad reflect", (a) => F.pad(a, [2, 1], "reflect").mul(w(12).view(1, 2, 6)), () => [randn([1, 2, 3], 34)]);
  check("pad replicate", (a) => F.pad(a, [1, 1, 1, 0], "replicate").mul(w(12).view(1, 1, 3, 4)), () => [randn([1, 1, 2, 2], 35)]);
  check("flip, roll, movedim", (a) => a.flip(0).roll(1, 1).movedim(0, 1).mul(w(6).view(3, 2)), () => [randn([2, 3], 36)]);
});

// ---------------------------------------------------------------------------------------------

describe("functional", () => {
  check("linear (input, weight, bias)", (x, wt, b) => F.linear(x, wt, b), () => [randn([2, 3], 1), randn([4, 3], 2), randn([4], 3)]);
  check("linear without bias, 3-D input", (x, wt) => F.linear(x, wt), () => [randn([2, 1, 3], 4), randn([2, 3], 5)]);
  check("embedding (weight grad, repeated rows)", (wt) => F.embedding(torch.tensor([[0, 2], [2, 2]], i64), wt), () => [randn([3, 2], 6)]);
  check("layerNorm (input, weight, bias)", (x, wt, b) => F.layerNorm(x, [4], wt, b), () => [randn([2, 4], 7), randn([4], 8), randn([4], 9)]);
  check("layerNorm over two dims, no affine", (x) => F.layerNorm(x, [2, 3]), () => [randn([2, 2, 3], 10)]);
  check("rmsNorm (input, weight)", (x, wt) => F.rmsNorm(x, wt), () => [randn([2, 4], 11), randn([4], 12)]);
  check("softmax", (x) => F.softmax(x, 1), () => [randn([2, 4], 13)]);
  check("softmax over dim 0", (x) => F.softmax(x, 0), () => [randn([3, 2], 14)]);
  check("logSoftmax", (x) => F.logSoftmax(x, -1), () => [randn([2, 4], 15)]);
  check("crossEntropy", (x) => F.crossEntropy(x, torch.tensor([2, 0, 1], i64)), () => [randn([3, 4], 16)]);
  check("crossEntropy with labelSmoothing and ignoreIndex", (x) => F.crossEntropy(x, torch.tensor([2, -100, 1], i64), { labelSmoothing: 0.1 }), () => [randn([3, 4], 17)]);
  check("crossEntropy with weights, sum", (x) => F.crossEntropy(x, torch.tensor([3, 0], i64), { weight: torch.tensor([1, 2, 0.5, 3], f64), reduction: "sum", labelSmoothing: 0.2 }), () => [randn([2, 4], 18)]);
  check("crossEntropy with probability targets (logits and targets)", (x, p) => F.crossEntropy(x, p), () => [randn([2, 3], 19), uniform([2, 3], 0.1, 1, 20)]);
  check("crossEntropy over [N, C, d]", (x) => F.crossEntropy(x, torch.tensor([[0, 2], [1, 1]], i64), { reduction: "none" }), () => [randn([2, 3, 2], 21)]);
  check("mseLoss (input and target)", (a, b) => F.mseLoss(a, b), () => [randn([2, 3], 22), randn([2, 3], 23)]);
  check("mseLoss none", (a, b) => F.mseLoss(a, b, "none"), () => [randn([4], 24), randn([4], 25)]);
  // |input − target| = [0.3, 0.7, 1.6, 2.4]: both sides of beta = 1, away from it
  check("smoothL1Loss", (a, b) => F.smoothL1Loss(a, b), () => [leaf([0.3, -0.7, 1.6, 2.0]), leaf([0, 0, 0, -0.4])]);
  check("smoothL1Loss with beta, sum", (a, b) => F.smoothL1Loss(a, b, { beta: 0.5, reduction: "sum" }), () => [leaf([0.3, -0.7, 1.6, 2.0]), leaf([0, 0, 0, -0.4])]);
  check("binaryCrossEntropyWithLogits", (x, y) => F.binaryCrossEntropyWithLogits(x, y), () => [randn([2, 3], 26), uniform([2, 3], 0, 1, 27)]);
  check("cosineSimilarity", (a, b) => F.cosineSimilarity(a, b), () => [randn([2, 3], 28), randn([2, 3], 29)]);
  check("cosineSimilarity over the last dim", (a, b) => F.cosineSimilarity(a, b, -1), () => [randn([3, 2], 30), randn([3, 2], 31)]);
  check("normalize", (x) => F.normalize(x), () => [randn([2, 3], 32)]);
  check("normalize p = 1 over dim 0", (x) => F.normalize(x, { p: 1, dim: 0 }), () => [awayFromZero([3, 2], 33)]);
  check("dropout (reseeded: the same mask on every call)", (x) => { torch.manualSeed(5); return F.dropout(x, 0.4, true); }, () => [randn([2, 5], 34)]);
  check("conv2d (input, weight, bias)", (x, wt, b) => F.conv2d(x, wt, b), () => [randn([1, 2, 3, 3], 35), randn([2, 2, 2, 2], 36), randn([2], 37)]);
  check("conv2d with stride, padding, dilation", (x, wt) => F.conv2d(x, wt, null, { stride: 2, padding: 1, dilation: [1, 2] }), () => [randn([1, 1, 4, 4], 38), randn([1, 1, 2, 2], 39)]);
  check("conv2d with groups", (x, wt) => F.conv2d(x, wt, null, { groups: 2 }), () => [randn([1, 2, 3, 3], 40), randn([2, 1, 2, 2], 41)]);
  check("conv3d (input, weight, bias)", (x, wt, b) => F.conv3d(x, wt, b, { padding: [0, 1, 0] }), () => [randn([1, 1, 2, 3, 3], 42), randn([2, 1, 2, 2, 2], 43), randn([2], 44)]);
  check("adaptiveAvgPool2d (overlapping windows)", (x) => F.adaptiveAvgPool2d(x, [2, 2]), () => [randn([1, 2, 3, 3], 45)]);
  check("adaptiveAvgPool2d (uneven)", (x) => F.adaptiveAvgPool2d(x, [3, 2]), () => [randn([1, 1, 5, 4], 46)]);
  check("avgPool2d", (x) => F.avgPool2d(x, 2, 1), () => [randn([1, 1, 3, 3], 47)]);
  check("maxPool2d (no ties)", (x) => F.maxPool2d(x, 2), () => [randn([1, 1, 4, 4], 48)]);
  check("interpolate bilinear", (x) => F.interpolate(x, [3, 5], { mode: "bilinear" }), () => [randn([1, 1, 2, 3], 49)]);
  check("interpolate bilinear, align corners", (x) => F.interpolate(x, [4, 2], { mode: "bilinear", alignCorners: true }), () => [randn([1, 2, 3, 3], 50)]);
  check("interpolate bilinear downsampling", (x) => F.interpolate(x, [2, 2], { mode: "bilinear" }), () => [randn([1, 1, 3, 4], 51)]);
  check("interpolate bicubic", (x) => F.interpolate(x, [4, 5], { mode: "bicubic" }), () => [randn([1, 1, 3, 3], 52)]);
  check("interpolate bicubic, align corners", (x) => F.interpolate(x, [3, 4], { mode: "bicubic", alignCorners: true }), () => [randn([1, 1, 2, 3], 53)]);
  check("interpolate bilinear, antialiased downsampling", (x) => F.interpolate(x, [2, 2], { mode: "bilinear", antialias: true }), () => [randn([1, 1, 4, 5], 54)]);
  check("interpolate nearest", (x) => F.interpolate(x, [4, 3], { mode: "nearest" }), () => [randn([1, 1, 2, 2], 55)]);
});

describe("scaledDotProductAttention", () => {
  const qkv = (seed: number) => [randn([1, 2, 3, 2], seed), randn([1, 2, 3, 2], seed + 1), randn([1, 2, 3, 2], seed + 2)];
  check("no mask (q, k, v)", (q, k, v) => F.scaledDotProductAttention(q, k, v), () => qkv(1));
  check("causal (q, k, v)", (q, k, v) => F.scaledDotProductAttention(q, k, v, { isCausal: true }), () => qkv(4));
  check("bool mask (q, k, v)", (q, k, v) => F.scaledDotProductAttention(q, k, v, {
    attnMask: torch.tensor([[true, false, true], [true, true, false], [false, false, true]]),
  }), () => qkv(7));
  check("additive float mask (q, k, v and the mask)", (q, k, v, m) => F.scaledDotProductAttention(q, k, v, { attnMask: m }), () => [...qkv(10), randn([3, 3], 13)]);
  check("explicit scale, L ≠ S", (q, k, v) => F.scaledDotProductAttention(q, k, v, { scale: 0.7 }), () => [randn([1, 2, 2], 14), randn([1, 4, 2], 15), randn([1, 4, 3], 16)]);
});

it("frees every tensor the checks created", () => {
  assert.equal(torch.memory().tensors, liveAtStart, "live tensors after the suite");
});
