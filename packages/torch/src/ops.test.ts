// Every op against values worked out by hand (or, where noted, printed by PyTorch 1.13 — the
// same libtorch the addon links — with `/usr/bin/python3 -c "import torch; ..."`).
// Each test body runs inside torch.scope, and the last test checks nothing leaked.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { torch, F, Tensor } from "./index.js";

const liveAtStart = torch.memory().tensors;

/** A test whose tensors are all freed when it ends. */
const test = (name: string, body: () => void): void => {
  it(name, () => { torch.scope(body); });
};

const T = torch.tensor;
const f64 = { dtype: "float64" } as const;
const i64 = { dtype: "int64" } as const;

function values(t: Tensor): number[] { return Array.from(t.toFloat64Values()); }

/** Checks shape and (flat, row-major) values; tol 0 means exact. */
function expectTensor(t: Tensor, shape: number[], expected: number[], tol = 0): void {
  assert.deepEqual(t.shape, shape, `shape [${t.shape}] vs expected [${shape}]`);
  expectValues(t, expected, tol);
}
function expectValues(t: Tensor | number[], expected: number[], tol = 0): void {
  const got = Array.isArray(t) ? t : values(t);
  assert.equal(got.length, expected.length, `got ${got.length} values, expected ${expected.length}`);
  for (let i = 0; i < got.length; i++) {
    const a = got[i]!, e = expected[i]!;
    const ok = tol === 0 ? Object.is(a, e) || a === e : Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)) || (a === e);
    assert.ok(ok, `element ${i}: got ${a}, expected ${e}${tol ? ` (tol ${tol})` : ""}\n  got      [${got.join(", ")}]\n  expected [${expected.join(", ")}]`);
  }
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), for the exact-GELU formula.
function erf(x: number): number {
  const s = Math.sign(x), a = Math.abs(x), t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

// ---------------------------------------------------------------------------------------------

describe("creation", () => {
  test("zeros, ones, full, empty with dtype and shape", () => {
    expectTensor(torch.zeros([2, 3]), [2, 3], [0, 0, 0, 0, 0, 0]);
    assert.equal(torch.zeros([2]).dtype, "float32");
    const o = torch.ones([3], i64);
    assert.equal(o.dtype, "int64");
    expectValues(o, [1, 1, 1]);
    expectTensor(torch.full([2, 2], 7), [2, 2], [7, 7, 7, 7]);
    assert.equal(torch.full([1], 7).dtype, "float32", "numbers fill float32 unless a dtype is given");
    assert.equal(torch.full([1], true).dtype, "bool");
    assert.equal(torch.full([2], 3, i64).dtype, "int64");
    const e = torch.empty([4, 0, 2], f64);
    assert.deepEqual(e.shape, [4, 0, 2]);
    assert.equal(e.dtype, "float64");
    assert.equal(e.numel(), 0);
    assert.equal(torch.zeros([]).ndim, 0, "a 0-d tensor");
    assert.throws(() => torch.zeros([2, -1]), /non-negative integers/);
  });

  test("arange: integer and float steps", () => {
    const a = torch.arange(5);
    assert.equal(a.dtype, "int64");
    expectTensor(a, [5], [0, 1, 2, 3, 4]);
    expectValues(torch.arange(2, 11, 3), [2, 5, 8]);
    expectValues(torch.arange(5, 0, -2), [5, 3, 1]);
    const f = torch.arange(0, 1, 0.25);
    assert.equal(f.dtype, "float32");
    expectTensor(f, [4], [0, 0.25, 0.5, 0.75]);
    expectValues(torch.arange(1, 2.5), [1, 2], 0);
    assert.equal(torch.arange(3, undefined, 1, f64).dtype, "float64");
  });

  test("eye (square and rectangular)", () => {
    expectTensor(torch.eye(2), [2, 2], [1, 0, 0, 1]);
    expectTensor(torch.eye(2, 3), [2, 3], [1, 0, 0, 0, 1, 0]);
  });

  test("*Like forms keep shape and dtype", () => {
    const base = T([[1, 2, 3]], i64);
    const z = torch.zerosLike(base), o = torch.onesLike(base), f = torch.fullLike(base, 4), e = torch.emptyLike(base);
    for (const t of [z, o, f, e]) { assert.deepEqual(t.shape, [1, 3]); assert.equal(t.dtype, "int64"); }
    expectValues(z, [0, 0, 0]);
    expectValues(o, [1, 1, 1]);
    expectValues(f, [4, 4, 4]);
    assert.equal(torch.onesLike(base, f64).dtype, "float64");
    const r = torch.randnLike(T([[0, 0], [0, 0]], f64));
    assert.deepEqual(r.shape, [2, 2]);
    assert.equal(r.dtype, "float64");
    const u = torch.randLike(torch.zeros([50]));
    assert.ok(values(u).every((v) => v >= 0 && v < 1));
  });

  test("randn / rand / randint: shape, range and PyTorch's streams under manualSeed", () => {
    // torch.manual_seed(0); torch.randn(3) / torch.rand(3) / torch.randint(0, 10, (5,)) in PyTorch 1.13
    torch.manualSeed(0);
    expectTensor(torch.randn([3]), [3], [1.5409960746765137, -0.293428897857666, -2.1787893772125244]);
    torch.manualSeed(0);
    expectValues(torch.rand([3]), [0.49625658988952637, 0.7682217955589294, 0.08847743272781372]);
    torch.manualSeed(0);
    const ri = torch.randint(0, 10, [5]);
    assert.equal(ri.dtype, "int64");
    expectValues(ri, [4, 9, 3, 0, 3]);

    const r = torch.randint(-3, 4, [2, 500]);
    assert.deepEqual(r.shape, [2, 500]);
    const rv = values(r);
    assert.ok(rv.every((v) => Number.isInteger(v) && v >= -3 && v < 4), "randint stays in [low, high)");
    assert.ok(new Set(rv).size === 7, "randint hits every value of a small range");
    const u = values(torch.rand([1000]));
    assert.ok(u.every((v) => v >= 0 && v < 1), "rand in [0, 1)");
    const n = values(torch.randn([4000], f64));
    const mean = n.reduce((a, b) => a + b, 0) / n.length;
    const sd = Math.sqrt(n.reduce((a, b) => a + (b - mean) ** 2, 0) / n.length);
    assert.ok(Math.abs(mean) < 0.1 && Math.abs(sd - 1) < 0.1, `randn mean ${mean}, sd ${sd}`);
  });

  test("tensor() from nested arrays and typed arrays", () => {
    const a = T([[1, 2], [3, 4]]);
    assert.equal(a.dtype, "float32");
    expectTensor(a, [2, 2], [1, 2, 3, 4]);
    assert.deepEqual(a.tolist(), [[1, 2], [3, 4]]);
    assert.equal(T([[true, false]]).dtype, "bool");
    assert.deepEqual(T(5).shape, [], "a scalar makes a 0-d tensor");
    assert.throws(() => T([[1, 2], [3]]), /ragged/);
    const i = T(new Int32Array([1, -2, 3]));
    assert.equal(i.dtype, "int32");
    expectTensor(i, [3], [1, -2, 3]);
    const l = T(new BigInt64Array([1n, 2n, 3n, 4n]), { shape: [2, 2] });
    assert.equal(l.dtype, "int64");
    assert.deepEqual(l.tolist(), [[1, 2], [3, 4]]);
    assert.equal(T(new Float64Array([0.1])).dtype, "float64");
    assert.equal(T(new Uint8Array([1, 0]), { dtype: "bool" }).dtype, "bool");
    // float16 from raw bits: 0x3e00 = 1.5, 0xc000 = -2
    expectValues(T(new Uint16Array([0x3e00, 0xc000]), { dtype: "float16" }), [1.5, -2]);
    assert.throws(() => T(new Float32Array(3), { shape: [2, 2] }), /got 12 bytes/);
    // 16-bit floats from numbers round to nearest even: 1.00390625 is halfway between bf16 1 and 1.0078125.
    expectValues(T([1.5, 1.00390625], { dtype: "bfloat16" }), [1.5, 1]);
  });

  describe("dtype round trips (toTypedArray / item / tolist)", () => {
    test("float32", () => {
      const t = T([1.5, -2, 0.1]);
      const a = t.toTypedArray();
      assert.ok(a instanceof Float32Array);
      assert.deepEqual(Array.from(a), [1.5, -2, Math.fround(0.1)]);
      assert.equal(t.select(0, 2).item(), Math.fround(0.1));
      assert.deepEqual(t.tolist(), [1.5, -2, Math.fround(0.1)]);
    });
    test("float64", () => {
      const t = T([1.5, -2, 0.1], f64);
      const a = t.toTypedArray();
      assert.ok(a instanceof Float64Array);
      assert.deepEqual(Array.from(a), [1.5, -2, 0.1]);
      assert.equal(t.select(0, 2).item(), 0.1);
      assert.deepEqual(t.tolist(), [1.5, -2, 0.1]);
    });
    test("bfloat16 (raw bits, round to nearest even)", () => {
      // PyTorch: torch.tensor([1.5, -2, 0.1]).bfloat16() bits 0x3fc0, 0xc000, 0x3dcd; values [1.5, -2.0, 0.10009765625]
      const t = T([1.5, -2, 0.1]).to("bfloat16");
      assert.equal(t.dtype, "bfloat16");
      const a = t.toTypedArray();
      assert.ok(a instanceof Uint16Array);
      assert.deepEqual(Array.from(a), [0x3fc0, 0xc000, 0x3dcd]);
      assert.equal(t.select(0, 2).item(), 0.10009765625);
      assert.deepEqual(t.tolist(), [1.5, -2, 0.10009765625]);
      expectValues(t.float(), [1.5, -2, 0.10009765625]);
    });
    test("float16", () => {
      // PyTorch: torch.tensor([1.5, -2, 0.1]).half() bits 0x3e00, 0xc000, 0x2e66; values [1.5, -2.0, 0.0999755859375]
      const t = T([1.5, -2, 0.1]).to("float16");
      const a = t.toTypedArray();
      assert.ok(a instanceof Uint16Array);
      assert.deepEqual(Array.from(a), [0x3e00, 0xc000, 0x2e66]);
      assert.equal(t.select(0, 2).item(), 0.0999755859375);
      assert.deepEqual(t.tolist(), [1.5, -2, 0.0999755859375]);
    });
    test("int64 (exact beyond 2^32)", () => {
      const t = T([1, -2, 2 ** 40], i64);
      const a = t.toTypedArray();
      assert.ok(a instanceof BigInt64Array);
      assert.deepEqual(Array.from(a), [1n, -2n, 2n ** 40n]);
      assert.equal(t.select(0, 2).item(), 2 ** 40);
      assert.deepEqual(t.tolist(), [1, -2, 2 ** 40]);
      expectValues(T([2.9, -2.9], i64), [2, -2]);
    });
    test("int32", () => {
      const t = T([[7, -8]], { dtype: "int32" });
      const a = t.toTypedArray();
      assert.ok(a instanceof Int32Array);
      assert.deepEqual(Array.from(a), [7, -8]);
      assert.equal(t.select(1, 1).item(), -8);
      assert.deepEqual(t.tolist(), [[7, -8]]);
    });
    test("uint8", () => {
      const t = T([0, 255, 7], { dtype: "uint8" });
      const a = t.toTypedArray();
      assert.ok(a instanceof Uint8Array);
      assert.deepEqual(Array.from(a), [0, 255, 7]);
      assert.equal(t.select(0, 1).item(), 255);
      assert.deepEqual(t.tolist(), [0, 255, 7]);
    });
    test("bool", () => {
      const t = T([true, false, true]);
      const a = t.toTypedArray();
      assert.ok(a instanceof Uint8Array);
      assert.deepEqual(Array.from(a), [1, 0, 1]);
      assert.equal(t.select(0, 0).item(), 1);
      assert.deepEqual(t.tolist(), [1, 0, 1]);
      expectValues(T([0, 2, -1]).bool(), [0, 1, 1]);
    });
    test("conversions between dtypes", () => {
      expectValues(T([1.7, -1.7]).long(), [1, -1]);
      expectValues(T([1, 2], i64).double(), [1, 2]);
      assert.equal(T([1]).to({ dtype: "float64" }).dtype, "float64");
      const x = T([1, 2]);
      const c = x.to({ dtype: "float32", copy: true });
      c.fill_(0);
      expectValues(x, [1, 2]);
      expectTensor(torch.fromBytes(T([[3, -1]]).toBytes(), [2, 1], "float32"), [2, 1], [3, -1]);
      assert.deepEqual(Array.from(T([1], { dtype: "int32" }).toBytes()), [1, 0, 0, 0], "little-endian bytes");
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("elementwise", () => {
  const a = () => T([[1, 2], [3, 4]]);
  const b = () => T([[5, 6], [7, 8]]);

  test("add, sub, mul, div with tensors, numbers and alpha", () => {
    expectValues(a().add(b()), [6, 8, 10, 12]);
    expectValues(a().sub(b()), [-4, -4, -4, -4]);
    expectValues(a().mul(b()), [5, 12, 21, 32]);
    expectValues(a().div(b()), [1 / 5, 2 / 6, 3 / 7, 4 / 8], 1e-7);
    expectValues(a().add(1), [2, 3, 4, 5]);
    expectValues(a().mul(0.5), [0.5, 1, 1.5, 2]);
    expectValues(a().add(b(), 2), [11, 14, 17, 20]);
    expectValues(a().sub(b(), 0.5), [-1.5, -1, -0.5, 0]);
    expectValues(a().add(1, 3), [4, 5, 6, 7]);
    expectValues(a().add(T([10, 20])), [11, 22, 13, 24], 0); // broadcast over rows
    expectValues(a().neg(), [-1, -2, -3, -4]);
    expectValues(a().reciprocal(), [1, 0.5, 1 / 3, 0.25], 1e-7);
    expectValues(a().square(), [1, 4, 9, 16]);
  });

  test("div rounding modes, remainder, fmod", () => {
    const x = T([-7, 7], i64);
    expectValues(x.div(2), [-3.5, 3.5]);
    assert.equal(x.div(2).dtype, "float32", "true division of ints is float");
    expectValues(x.div(2, "trunc"), [-3, 3]);
    expectValues(x.div(2, "floor"), [-4, 3]);
    assert.equal(x.div(2, "floor").dtype, "int64");
    expectValues(x.remainder(3), [2, 1]);
    expectValues(x.fmod(3), [-1, 1]);
  });

  test("type promotion: numbers act as Python scalars", () => {
    const i = T([1, 2], i64);
    assert.equal(i.add(2).dtype, "int64");
    expectValues(i.add(2), [3, 4]);
    assert.equal(i.add(2.5).dtype, "float32");
    expectValues(i.add(2.5), [3.5, 4.5]);
    assert.equal(T([1]).add(T([1], f64)).dtype, "float64");
    assert.equal(T([1]).add(2.5).dtype, "float32", "float32 tensor + number stays float32");
    assert.equal(T([1], f64).mul(2).dtype, "float64");
    assert.equal(T([1], { dtype: "int32" }).add(T([1], i64)).dtype, "int64");
    assert.equal(T([1]).to("bfloat16").add(1.5).dtype, "bfloat16");
    assert.equal(T([1], { dtype: "uint8" }).add(T([1], i64)).dtype, "int64");
    assert.equal(T([true]).add(T([true])).dtype, "bool");
    assert.equal(T([1], i64).mul(T([1.5])).dtype, "float32");
  });

  test("pow (number, tensor, number base)", () => {
    expectValues(a().pow(2), [1, 4, 9, 16]);
    expectValues(a().pow(0.5), [1, Math.SQRT2, Math.sqrt(3), 2], 1e-7);
    expectValues(a().pow(T([[0, 1], [2, 3]])), [1, 2, 9, 64]);
    expectValues(torch.pow(2, T([0, 1, 3])), [1, 2, 8]);
    expectValues(torch.pow(T([3]), 2), [9]);
    expectValues(T([2], i64).pow(3), [8]);
    assert.equal(T([2], i64).pow(3).dtype, "int64");
  });

  test("exp, log, sqrt, rsqrt, abs, and friends", () => {
    expectValues(T([0, 1, -1]).exp(), [1, Math.E, 1 / Math.E], 1e-7);
    expectValues(T([1, Math.E, 0.5]).log(), [0, 1, Math.log(0.5)], 1e-7);
    expectValues(T([0]).log(), [-Infinity]);
    expectValues(T([4, 9, 0.25]).sqrt(), [2, 3, 0.5]);
    assert.ok(Number.isNaN(values(T([-1]).sqrt())[0]!));
    expectValues(T([4, 0.25]).rsqrt(), [0.5, 2]);
    expectValues(T([-1.5, 0, 2]).abs(), [1.5, 0, 2]);
    expectValues(T([-2, 3], i64).abs(), [2, 3]);
    expectValues(T([8, 0.5]).log2(), [3, -1]);
    expectValues(T([1e-10]).log1p(), [1e-10], 1e-6);
    expectValues(T([-1.5, 0, 2]).sign(), [-1, 0, 1]);
    expectValues(T([-1.5, 1.5, 2.5]).floor(), [-2, 1, 2]);
    expectValues(T([-1.5, 1.5, 2.5]).ceil(), [-1, 2, 3]);
    expectValues(T([-1.5, 0.5, 1.5, 2.5]).round(), [-2, 0, 2, 2], 0); // half to even, as torch
    expectValues(T([-1.7, 1.7]).trunc(), [-1, 1]);
    expectValues(T([0, Math.PI / 2]).sin(), [0, 1], 1e-7);
    expectValues(T([0, Math.PI]).cos(), [1, -1], 1e-7);
    expectValues(T([0, 0.5]).erf(), [0, erf(0.5)], 1e-6);
    expectValues(T([1, 0, -1]).div(0).isinf(), [1, 0, 1]);
    expectValues(T([1, 0]).div(0).isnan(), [0, 1]);
    expectValues(T([1, 0]).div(0).isfinite(), [0, 0]);
  });

  test("clamp, clampMin, clampMax", () => {
    const x = T([-2, -0.5, 0.5, 2]);
    expectValues(x.clamp(-1, 1), [-1, -0.5, 0.5, 1]);
    expectValues(x.clampMin(0), [0, 0, 0.5, 2]);
    expectValues(x.clampMax(0), [-2, -0.5, 0, 0]);
    expectValues(x.clamp(null, 1), [-2, -0.5, 0.5, 1]);
    expectValues(T([-5, 5], i64).clamp(-1, 1), [-1, 1]);
    assert.equal(T([-5, 5], i64).clamp(-1, 1).dtype, "int64");
  });

  test("where with tensor and number branches", () => {
    const c = T([true, false, true]);
    const x = T([1, 2, 3]), y = T([10, 20, 30]);
    expectValues(torch.where(c, x, y), [1, 20, 3]);
    expectValues(torch.where(c, x, 0), [1, 0, 3]);
    expectValues(torch.where(c, -1, y), [-1, 20, -1]);
    expectValues(torch.where(c, 1.5, 0), [1.5, 0, 1.5]);
    assert.equal(torch.where(c, x, 0).dtype, "float32");
    // broadcasting: cond [2, 1] against x [3]
    expectTensor(torch.where(T([[true], [false]]), x, y), [2, 3], [1, 2, 3, 10, 20, 30]);
  });

  test("maximum, minimum", () => {
    const x = T([1, 5, 3]), y = T([4, 2, 3]);
    expectValues(x.maximum(y), [4, 5, 3]);
    expectValues(torch.minimum(x, y), [1, 2, 3]);
    expectValues(torch.maximum(x, 2), [2, 5, 3]);
    expectValues(x.minimum(2), [1, 2, 2]);
  });

  test("comparisons return bool", () => {
    const x = T([1, 2, 3]);
    const y = T([3, 2, 1]);
    for (const [r, e] of [
      [x.eq(y), [0, 1, 0]], [x.ne(y), [1, 0, 1]], [x.lt(y), [1, 0, 0]],
      [x.le(y), [1, 1, 0]], [x.gt(y), [0, 0, 1]], [x.ge(y), [0, 1, 1]], [x.gt(1.5), [0, 1, 1]], [x.eq(2), [0, 1, 0]],
    ] as [Tensor, number[]][]) {
      assert.equal(r.dtype, "bool");
      expectValues(r, e);
    }
  });

  test("logical and bitwise ops", () => {
    const p = T([true, true, false, false]), q = T([true, false, true, false]);
    expectValues(p.logicalAnd(q), [1, 0, 0, 0]);
    expectValues(p.logicalOr(q), [1, 1, 1, 0]);
    expectValues(p.logicalXor(q), [0, 1, 1, 0]);
    expectValues(p.logicalNot(), [0, 0, 1, 1]);
    expectValues(T([0, 2, -1]).logicalNot(), [1, 0, 0]);
    expectValues(T([12], i64).bitwiseAnd(T([10], i64)), [8]);
    expectValues(T([12], i64).bitwiseOr(T([10], i64)), [14]);
    expectValues(T([0], i64).bitwiseNot(), [-1]);
    expectValues(T([true, false]).all(), [0]);
    expectValues(T([true, false]).any(), [1]);
    expectValues(T([[true, true], [false, true]]).all(1), [1, 0]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("activations", () => {
  const xs = [-3, -1, 0, 0.5, 2];
  const x = () => T(xs);

  test("relu, leakyRelu", () => {
    expectValues(F.relu(x()), [0, 0, 0, 0.5, 2]);
    expectValues(F.leakyRelu(x(), 0.1), [-0.3, -0.1, 0, 0.5, 2], 1e-7);
  });
  test("gelu exact (erf) vs 0.5·x·(1 + erf(x/√2))", () => {
    expectValues(F.gelu(x()), xs.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), 1e-6);
    // PyTorch: F.gelu(torch.tensor([-1., 0., 0.5, 2.], dtype=torch.float64))
    expectValues(F.gelu(T([-1, 0, 0.5, 2], f64)), [-0.15865525393145702, 0, 0.34573123063700656, 1.9544997361036416], 1e-14);
  });
  test("gelu tanh vs 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))", () => {
    const ref = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    expectValues(F.gelu(T(xs, f64), "tanh"), xs.map(ref), 1e-12);
    // the two forms differ by ~1.5e-4 at x = -1: the flag must reach the kernel
    assert.ok(Math.abs(values(F.gelu(T([-1]), "tanh"))[0]! - values(F.gelu(T([-1])))[0]!) > 1e-4);
  });
  test("silu, sigmoid, tanh, logSigmoid", () => {
    expectValues(F.silu(x()), xs.map((v) => v * sigmoid(v)), 1e-6);
    expectValues(F.sigmoid(x()), xs.map(sigmoid), 1e-6);
    expectValues(F.tanh(x()), xs.map(Math.tanh), 1e-6);
    expectValues(F.logSigmoid(x()), xs.map((v) => Math.log(sigmoid(v))), 1e-6);
  });
  test("softplus with beta and threshold", () => {
    expectValues(F.softplus(x()), xs.map((v) => Math.log1p(Math.exp(v))), 1e-6);
    // beta 2, threshold 1: (1/β)·log(1 + exp(β·x)), and x itself where β·x > threshold
    expectValues(F.softplus(x(), 2, 1), xs.map((v) => (2 * v > 1 ? v : Math.log1p(Math.exp(2 * v)) / 2)), 1e-6);
  });
});

// ---------------------------------------------------------------------------------------------

describe("reductions", () => {
  const x = () => T([[1, 2, 3], [4, 5, 6]]);

  test("sum over all, dims, keepdim and dtype", () => {
    expectTensor(x().sum(), [], [21]);
    expectTensor(x().sum(0), [3], [5, 7, 9]);
    expectTensor(x().sum(1, { keepdim: true }), [2, 1], [6, 15]);
    expectTensor(x().sum([0, 1]), [], [21]);
    expectTensor(x().sum(-1), [2], [6, 15]);
    assert.equal(T([1, 2], i64).sum().dtype, "int64");
    assert.equal(T([true, true]).sum().dtype, "int64");
    expectValues(T([true, true, false]).sum(), [2]);
    assert.equal(T([1, 2], i64).sum(null, { dtype: "float64" }).dtype, "float64");
  });

  test("mean, prod", () => {
    expectTensor(x().mean(), [], [3.5]);
    expectTensor(x().mean(1), [2], [2, 5]);
    expectTensor(x().mean(0, { keepdim: true }), [1, 3], [2.5, 3.5, 4.5]);
    expectTensor(x().mean([0, 1], { keepdim: true }), [1, 1], [3.5]);
    expectValues(x().prod(), [720]);
    expectValues(x().prod(1), [6, 120]);
  });

  test("max / min with indices, amax / amin, argmax / argmin", () => {
    const y = T([[1, 9, 3], [8, 5, 6]]);
    expectTensor(y.max(), [], [9]);
    expectTensor(y.min(), [], [1]);
    const mx = y.max(1);
    expectTensor(mx.values, [2], [9, 8]);
    expectTensor(mx.indices, [2], [1, 0]);
    assert.equal(mx.indices.dtype, "int64");
    const mn = y.min(0, { keepdim: true });
    expectTensor(mn.values, [1, 3], [1, 5, 3]);
    expectTensor(mn.indices, [1, 3], [0, 1, 0]);
    expectTensor(y.amax(0), [3], [8, 9, 6]);
    expectTensor(y.amax([0, 1]), [], [9]);
    expectTensor(y.amax(1, { keepdim: true }), [2, 1], [9, 8]);
    expectTensor(y.amin(1), [2], [1, 5]);
    expectTensor(y.argmax(), [], [1]);
    expectTensor(y.argmax(0), [3], [1, 0, 1]);
    expectTensor(y.argmin(1, { keepdim: true }), [2, 1], [0, 1]);
  });

  test("var / std, unbiased and biased", () => {
    const v = T([1, 2, 3, 4]); // mean 2.5, Σ(x-mean)² = 5
    expectValues(v.var(), [5 / 3], 1e-7);
    expectValues(v.var(null, { unbiased: false }), [1.25]);
    expectValues(v.std(), [Math.sqrt(5 / 3)], 1e-7);
    expectValues(v.std(null, { unbiased: false }), [Math.sqrt(1.25)], 1e-7);
    const m = T([[0, 2], [1, 2]]);
    expectValues(m.std(1, { unbiased: false }), [1, 0.5]);
    expectTensor(m.var(0, { keepdim: true }), [1, 2], [0.5, 0]);
  });

  test("norm (p = 2, 1, ∞; over dims)", () => {
    expectValues(T([3, 4]).norm(), [5]);
    expectValues(T([3, -4]).norm(1), [7]);
    expectValues(T([3, -4]).norm(Infinity), [4]);
    expectTensor(T([[3, 4], [6, 8]]).norm(2, 1), [2], [5, 10]);
    expectTensor(T([[3, 4], [6, 8]]).norm(2, 0, { keepdim: true }), [1, 2], [Math.sqrt(45), Math.sqrt(80)], 1e-7);
  });

  test("logsumexp", () => {
    expectValues(T([Math.log(1), Math.log(2), Math.log(3)]).logsumexp(0), [Math.log(6)], 1e-6);
    // stable for large inputs: log(e^1000 + e^1000) = 1000 + log 2
    expectValues(T([1000, 1000]).logsumexp(0), [1000 + Math.LN2], 1e-6);
    expectTensor(T([[0, 0], [1, 1]]).logsumexp(1, { keepdim: true }), [2, 1], [Math.LN2, 1 + Math.LN2], 1e-6);
  });

  test("cumsum", () => {
    expectValues(T([1, 2, 3, 4]).cumsum(0), [1, 3, 6, 10]);
    expectTensor(x().cumsum(1), [2, 3], [1, 3, 6, 4, 9, 15]);
    expectTensor(x().cumsum(0), [2, 3], [1, 2, 3, 5, 7, 9]);
    const ci = T([1, 2], { dtype: "int32" }).cumsum(0);
    assert.equal(ci.dtype, "int64", "integer cumsum accumulates in int64, as torch");
    assert.equal(T([1, 2]).cumsum(0, { dtype: "float64" }).dtype, "float64");
  });

  test("topk", () => {
    const t = T([1, 5, 3, 4]);
    const top = t.topk(2);
    expectValues(top.values, [5, 4]);
    expectValues(top.indices, [1, 3]);
    const low = t.topk(2, -1, { largest: false });
    expectValues(low.values, [1, 3]);
    expectValues(low.indices, [0, 2]);
    const rows = T([[1, 9, 3], [8, 5, 6]]).topk(1, 1);
    expectTensor(rows.values, [2, 1], [9, 8]);
    expectTensor(rows.indices, [2, 1], [1, 0]);
  });

  test("sort", () => {
    const s = T([3, 1, 2]).sort();
    expectValues(s.values, [1, 2, 3]);
    expectValues(s.indices, [1, 2, 0]);
    const d = T([[3, 1, 2], [0, 5, 4]]).sort(1, { descending: true });
    expectValues(d.values, [3, 2, 1, 5, 4, 0]);
    expectValues(d.indices, [0, 2, 1, 1, 2, 0]);
    const st = T([1, 0, 1, 0]).sort(0, { stable: true });
    expectValues(st.indices, [1, 3, 0, 2], 0); // stable: equal keys keep their order
    const c = T([[3, 1], [1, 2]]).sort(0);
    expectValues(c.values, [1, 1, 3, 2]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("linear algebra", () => {
  test("matmul: 2D, matrix-vector, batched with broadcast", () => {
    const a = T([[1, 2], [3, 4]]), b = T([[5, 6], [7, 8]]);
    expectTensor(a.matmul(b), [2, 2], [19, 22, 43, 50]);
    expectTensor(torch.matmul(a, T([1, 1])), [2], [3, 7]);
    expectTensor(T([1, 1]).matmul(a), [2], [4, 6]);
    // [2, 2, 2] @ [2, 2]: the matrix broadcasts over the batch
    const batch = torch.stack([torch.eye(2), torch.eye(2).mul(2)]);
    expectTensor(batch.matmul(b), [2, 2, 2], [5, 6, 7, 8, 10, 12, 14, 16]);
    // [2, 1, 1, 2] @ [3, 2, 1] -> [2, 3, 1, 1]
    const l = T([[[[1, 2]]], [[[3, 4]]]]);
    const r = T([[[1], [0]], [[0], [1]], [[1], [1]]]);
    expectTensor(l.matmul(r), [2, 3, 1, 1], [1, 2, 3, 3, 4, 7]);
    expectTensor(a.mm(b), [2, 2], [19, 22, 43, 50]);
    expectTensor(a.t(), [2, 2], [1, 3, 2, 4]);
    expectTensor(batch.mT.matmul(T([[0, 1], [0, 0]])), [2, 2, 2], [0, 1, 0, 0, 0, 2, 0, 0]);
    expectTensor(torch.outer(T([1, 2]), T([3, 4, 5])), [2, 3], [3, 4, 5, 6, 8, 10]);
    expectValues(T([[1, 2]], f64).matmul(T([[3], [4]], f64)), [11]);
  });

  test("bmm", () => {
    const a = T([[[1, 2]], [[3, 4]]]); // [2, 1, 2]
    const b = T([[[1], [1]], [[2], [-1]]]); // [2, 2, 1]
    expectTensor(torch.bmm(a, b), [2, 1, 1], [3, 2]);
  });

  test("einsum", () => {
    const a = T([[1, 2], [3, 4]]), b = T([[5, 6], [7, 8]]);
    expectTensor(torch.einsum("ij,jk->ik", a, b), [2, 2], [19, 22, 43, 50]);
    expectTensor(torch.einsum("ii->", a), [], [5]);
    expectTensor(torch.einsum("ij->ji", a), [2, 2], [1, 3, 2, 4]);
    expectTensor(torch.einsum("i,j->ij", T([1, 2]), T([3, 4])), [2, 2], [3, 4, 6, 8]);
    expectTensor(torch.einsum("bij,bjk->bik", torch.stack([a, b]), torch.stack([b, a])), [2, 2, 2], [19, 22, 43, 50, 23, 34, 31, 46]);
    expectTensor(torch.einsum("ij,ij->i", a, b), [2], [17, 53]);
  });

  test("linalg.svdvals", () => {
    // diag(3, 2) rotated: singular values stay 3 and 2, descending
    expectTensor(torch.linalg.svdvals(T([[0, 2], [3, 0]])), [2], [3, 2], 1e-6);
    expectTensor(torch.linalg.svdvals(T([[1, 1], [1, 1]])), [2], [2, 0], 1e-6);
  });
});

// ---------------------------------------------------------------------------------------------

describe("shape and indexing", () => {
  const x = () => torch.arange(6).view(2, 3); // [[0, 1, 2], [3, 4, 5]] int64

  test("view, reshape, flatten", () => {
    expectTensor(x().view(3, 2), [3, 2], [0, 1, 2, 3, 4, 5]);
    expectTensor(x().view(-1), [6], [0, 1, 2, 3, 4, 5]);
    assert.throws(() => x().t().view(6), /view size is not compatible/);
    expectTensor(x().t().reshape(6), [6], [0, 3, 1, 4, 2, 5]);
    expectTensor(x().reshape(1, -1, 2), [1, 3, 2], [0, 1, 2, 3, 4, 5]);
    const y = torch.arange(24).view(2, 3, 4);
    assert.deepEqual(y.flatten().shape, [24]);
    assert.deepEqual(y.flatten(1).shape, [2, 12]);
    assert.deepEqual(y.flatten(0, 1).shape, [6, 4]);
    expectValues(y.flatten(1).select(0, 1).narrow(0, 0, 3), [12, 13, 14]);
  });

  test("permute, transpose, contiguous", () => {
    const y = torch.arange(24).view(2, 3, 4);
    const p = y.permute(2, 0, 1);
    assert.deepEqual(p.shape, [4, 2, 3]);
    assert.deepEqual(p.stride(), [1, 12, 4]);
    assert.equal(p.isContiguous(), false);
    expectValues(p.select(0, 1).select(0, 1), [13, 17, 21]); // y[1, :, 1]
    const t = x().transpose(0, 1);
    expectTensor(t, [3, 2], [0, 3, 1, 4, 2, 5]);
    assert.equal(t.isContiguous(), false);
    const c = t.contiguous();
    assert.equal(c.isContiguous(), true);
    assert.deepEqual(c.stride(), [2, 1]);
    expectTensor(c, [3, 2], [0, 3, 1, 4, 2, 5]);
    expectTensor(y.movedim(0, 2), [3, 4, 2], values(y.permute(1, 2, 0)));
  });

  test("unsqueeze, squeeze", () => {
    assert.deepEqual(x().unsqueeze(0).shape, [1, 2, 3]);
    assert.deepEqual(x().unsqueeze(-1).shape, [2, 3, 1]);
    const s = torch.zeros([1, 2, 1, 3]);
    assert.deepEqual(s.squeeze().shape, [2, 3]);
    assert.deepEqual(s.squeeze(0).shape, [2, 1, 3]);
    assert.deepEqual(s.squeeze(1).shape, [1, 2, 1, 3], "squeezing a dim that is not 1 is a no-op");
    assert.deepEqual(s.squeeze(-2).shape, [1, 2, 3]);
  });

  test("expand, repeat", () => {
    const c = T([[1], [2]]);
    const e = c.expand(2, 3);
    expectTensor(e, [2, 3], [1, 1, 1, 2, 2, 2]);
    assert.deepEqual(e.stride(), [1, 0], "expand is a view");
    expectTensor(c.expand(-1, 2), [2, 2], [1, 1, 2, 2]);
    expectTensor(T([1, 2]).expandAs(torch.zeros([2, 2])), [2, 2], [1, 2, 1, 2]);
    expectTensor(T([1, 2]).repeat(2, 2), [2, 4], [1, 2, 1, 2, 1, 2, 1, 2]);
    expectTensor(c.repeat(1, 2), [2, 2], [1, 1, 2, 2]);
    expectTensor(T([1, 2, 3]).flip(0), [3], [3, 2, 1]);
    expectTensor(T([1, 2, 3]).roll(1, 0), [3], [3, 1, 2]);
  });

  test("cat, stack", () => {
    expectTensor(torch.cat([x(), x()]), [4, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
    expectTensor(torch.cat([x(), torch.arange(2).view(2, 1)], 1), [2, 4], [0, 1, 2, 0, 3, 4, 5, 1]);
    expectTensor(torch.stack([T([1, 2]), T([3, 4])]), [2, 2], [1, 2, 3, 4]);
    expectTensor(torch.stack([T([1, 2]), T([3, 4])], 1), [2, 2], [1, 3, 2, 4]);
    expectTensor(torch.stack([T([1, 2]), T([3, 4])], -1), [2, 2], [1, 3, 2, 4]);
    assert.equal(torch.cat([T([1], i64), T([1.5])]).dtype, "float32", "cat promotes");
    assert.throws(() => torch.cat([torch.zeros([2, 2]), torch.zeros([3, 3])], 0), /Sizes of tensors must match/);
  });

  test("split by size and by sizes, chunk, unbind", () => {
    const v = torch.arange(5);
    const s = v.split(2);
    assert.deepEqual(s.map((t) => values(t)), [[0, 1], [2, 3], [4]]);
    const ss = v.split([1, 4]);
    assert.deepEqual(ss.map((t) => values(t)), [[0], [1, 2, 3, 4]]);
    assert.throws(() => v.split([1, 2]), /split_with_sizes/);
    const cols = x().split([2, 1], 1);
    expectTensor(cols[0]!, [2, 2], [0, 1, 3, 4]);
    expectTensor(cols[1]!, [2, 1], [2, 5]);
    assert.deepEqual(torch.arange(6).chunk(3).map((t) => values(t)), [[0, 1], [2, 3], [4, 5]]);
    assert.deepEqual(v.chunk(3).map((t) => values(t)), [[0, 1], [2, 3], [4]]);
    assert.deepEqual(x().unbind(1).map((t) => values(t)), [[0, 3], [1, 4], [2, 5]]);
  });

  test("narrow, slice (negative indices, steps), select", () => {
    expectTensor(x().narrow(1, 1, 2), [2, 2], [1, 2, 4, 5]);
    const r = torch.arange(10);
    expectValues(r.slice(0, -3), [7, 8, 9]);
    expectValues(r.slice(0, 1, -1, 3), [1, 4, 7]);
    expectValues(r.slice(0, null, null, 4), [0, 4, 8]);
    expectValues(r.slice(0, -4, -1), [6, 7, 8]);
    expectValues(r.slice(0, 8, 100), [8, 9], 0);
    expectTensor(x().slice(1, 1), [2, 2], [1, 2, 4, 5]);
    expectTensor(x().select(1, -1), [2], [2, 5]);
    expectTensor(x().select(0, 1), [3], [3, 4, 5]);
    assert.throws(() => x().select(0, 2), /out of range/);
  });

  test("indexSelect, gather", () => {
    expectTensor(x().indexSelect(0, T([1, 0, 1], i64)), [3, 3], [3, 4, 5, 0, 1, 2, 3, 4, 5]);
    expectTensor(x().indexSelect(1, T([2], i64)), [2, 1], [2, 5]);
    expectTensor(x().gather(1, T([[2, 0], [1, 1]], i64)), [2, 2], [2, 0, 4, 4]);
    expectTensor(x().gather(0, T([[1, 0, 1]], i64)), [1, 3], [3, 1, 5]);
  });

  test("scatter (tensor and number), scatterAdd", () => {
    const z = torch.zeros([2, 3]);
    const idx = T([[2, 0], [1, 1]], i64);
    // out[i][idx[i][j]] = src[i][j]; a repeated index keeps one of the writes, so row 1 uses equal sources
    expectTensor(z.scatter(1, idx, T([[5, 6], [7, 7]])), [2, 3], [6, 0, 5, 0, 7, 0]);
    expectTensor(z.scatter(1, T([[0], [2]], i64), 9), [2, 3], [9, 0, 0, 0, 0, 9]);
    expectTensor(z.scatterAdd(1, idx, T([[5, 6], [7, 8]])), [2, 3], [6, 0, 5, 0, 15, 0]);
    expectValues(z, [0, 0, 0, 0, 0, 0], 0); // not in place
  });

  test("maskedFill and maskedFill_", () => {
    const y = T([[1, 2], [3, 4]]);
    const m = T([[true, false], [false, true]]);
    expectValues(y.maskedFill(m, -1), [-1, 2, 3, -1]);
    expectValues(y.maskedFill(T([false, true]), 0), [1, 0, 3, 0]); // broadcast over rows
    expectValues(y.maskedFill(m, -Infinity), [-Infinity, 2, 3, -Infinity]);
    expectValues(y, [1, 2, 3, 4]);
    y.maskedFill_(m, 0);
    expectValues(y, [0, 2, 3, 0]);
  });

  test("index by tensors, with null for a full slice", () => {
    const y = torch.arange(12).view(3, 4);
    expectTensor(y.index([T([2, 0], i64)]), [2, 4], [8, 9, 10, 11, 0, 1, 2, 3]);
    expectTensor(y.index([null, T([3, 1], i64)]), [3, 2], [3, 1, 7, 5, 11, 9]);
    expectTensor(y.index([T([0, 2], i64), T([1, 3], i64)]), [2], [1, 11]);
    expectTensor(y.index([T([true, false, true])]), [2, 4], [0, 1, 2, 3, 8, 9, 10, 11]);
    expectTensor(y.index([y.gt(9)]), [2], [10, 11]);
    assert.throws(() => y.index([T([3], i64)]), /out of bounds/);
  });

  test("indexPut (replace and accumulate) and indexPut_", () => {
    const z = torch.zeros([3]);
    expectValues(z.indexPut([T([0, 2], i64)], T([5, 6])), [5, 0, 6]);
    expectValues(z.indexPut([T([1, 1], i64)], T([2, 3]), true), [0, 5, 0]);
    expectValues(z.indexPut([T([true, false, true])], 7), [7, 0, 7]); // a number takes the tensor's dtype
    expectValues(z.indexPut([T([1], i64)], 2.5), [0, 2.5, 0]);
    expectValues(T([1, 2], i64).indexPut([T([0], i64)], 9), [9, 2]);
    expectValues(z, [0, 0, 0]);
    const m = torch.zeros([2, 2]);
    m.indexPut_([null, T([1], i64)], 4);
    expectValues(m, [0, 4, 0, 4]);
    m.indexPut_([T([0], i64), T([0], i64)], T([1]), true);
    m.indexPut_([T([0], i64), T([0], i64)], T([1]), true);
    expectValues(m, [2, 4, 0, 4]);
  });

  test("triu, tril with diagonals", () => {
    const o = torch.ones([3, 3]);
    expectValues(o.triu(), [1, 1, 1, 0, 1, 1, 0, 0, 1]);
    expectValues(torch.triu(o, 1), [0, 1, 1, 0, 0, 1, 0, 0, 0]);
    expectValues(o.tril(), [1, 0, 0, 1, 1, 0, 1, 1, 1]);
    expectValues(torch.tril(o, -1), [0, 0, 0, 1, 0, 0, 1, 1, 0]);
    expectValues(torch.ones([2, 3]).tril(1), [1, 1, 0, 1, 1, 1]);
  });

  test("F.pad constant, reflect, replicate, circular", () => {
    const m = T([[1, 2], [3, 4]]);
    expectTensor(F.pad(m, [1, 0, 0, 1], "constant", 9), [3, 3], [9, 1, 2, 9, 3, 4, 9, 9, 9]);
    expectTensor(F.pad(m, [1, 1]), [2, 4], [0, 1, 2, 0, 0, 3, 4, 0]);
    const r = T([[[1, 2, 3]]]);
    expectTensor(F.pad(r, [2, 1], "reflect"), [1, 1, 6], [3, 2, 1, 2, 3, 2]);
    expectTensor(F.pad(r, [2, 1], "replicate"), [1, 1, 6], [1, 1, 1, 2, 3, 3]);
    expectTensor(F.pad(r, [1, 2], "circular"), [1, 1, 6], [3, 1, 2, 3, 1, 2]);
    expectTensor(F.pad(T([[[[1, 2], [3, 4]]]]), [1, 0, 0, 1], "replicate"), [1, 1, 3, 3], [1, 1, 2, 3, 3, 4, 3, 3, 4]);
  });

  test("misc: unique, nonzero, searchsorted", () => {
    const u = torch.unique(T([3, 1, 3, 2]));
    expectValues(u.values, [1, 2, 3]);
    expectValues(u.inverse, [2, 0, 2, 1]);
    expectTensor(torch.nonzero(T([[0, 1], [1, 0]])), [2, 2], [0, 1, 1, 0]);
    expectValues(torch.searchsorted(T([1, 3, 5]), T([0, 3, 6])), [0, 1, 3]);
    expectValues(torch.searchsorted(T([1, 3, 5]), T([3]), { right: true }), [2]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("functional", () => {
  test("linear with and without bias", () => {
    const x = T([[1, 2], [0, -1]]);
    const w = T([[1, 0], [0, 1], [1, 1]]); // [out 3, in 2]
    expectTensor(F.linear(x, w, T([1, 2, 3])), [2, 3], [2, 4, 6, 1, 1, 2]);
    expectTensor(F.linear(x, w), [2, 3], [1, 2, 3, 0, -1, -1]);
    expectTensor(F.linear(T([[[1, 1]]]), w), [1, 1, 3], [1, 1, 2]);
  });

  test("embedding", () => {
    const w = torch.arange(6).view(3, 2).float();
    expectTensor(F.embedding(T([[0, 2], [1, 1]], i64), w), [2, 2, 2], [0, 1, 4, 5, 2, 3, 2, 3]);
    assert.throws(() => F.embedding(T([3], i64), w), /index out of range/);
    // paddingIdx rows are looked up but get no gradient
    const wg = torch.ones([2, 2], { requiresGrad: true });
    const e = F.embedding(T([0, 1, 1], i64), wg, 1);
    expectValues(e, [1, 1, 1, 1, 1, 1]);
    e.sum().backward();
    expectValues(wg.grad!, [1, 1, 0, 0]);
  });

  test("layerNorm vs (x − mean)/√(var + eps)·w + b", () => {
    const x = T([[1, 2, 3, 4], [2, 2, 2, 2]]);
    const ref = (row: number[], w: number[], b: number[]) => {
      const mu = row.reduce((a, c) => a + c, 0) / row.length;
      const v = row.reduce((a, c) => a + (c - mu) ** 2, 0) / row.length;
      return row.map((c, i) => ((c - mu) / Math.sqrt(v + 1e-5)) * w[i]! + b[i]!);
    };
    const w = [1, 2, 0.5, -1], b = [0, 1, 0, 0.5];
    expectTensor(F.layerNorm(x, [4], T(w), T(b)), [2, 4], [...ref([1, 2, 3, 4], w, b), ...ref([2, 2, 2, 2], w, b)], 1e-5);
    expectTensor(F.layerNorm(x, [4]), [2, 4], [...ref([1, 2, 3, 4], [1, 1, 1, 1], [0, 0, 0, 0]), 0, 0, 0, 0], 1e-5);
    // normalising over the last two dims
    const all = F.layerNorm(x.view(1, 2, 4), [2, 4]);
    expectValues(all.mean(), [0], 1e-6);
    expectValues(all.var(null, { unbiased: false }), [1], 1e-4);
  });

  test("rmsNorm vs x/√(mean(x²) + eps)·w, in float32 and cast back", () => {
    const x = T([[1, 2, 3, 4]]);
    const inv = 1 / Math.sqrt(7.5 + 1e-6); // mean(x²) = 30/4
    expectTensor(F.rmsNorm(x, T([1, 2, 1, 0.5])), [1, 4], [1 * inv, 4 * inv, 3 * inv, 2 * inv], 1e-6);
    expectValues(F.rmsNorm(x), [1, 2, 3, 4].map((v) => v * inv), 1e-6);
    expectValues(F.rmsNorm(x, null, 0.5), [1, 2, 3, 4].map((v) => v / Math.sqrt(8)), 1e-6);
    const bf = F.rmsNorm(x.to("bfloat16"), T([1, 1, 1, 1]).to("bfloat16"));
    assert.equal(bf.dtype, "bfloat16");
    expectValues(bf, [1, 2, 3, 4].map((v) => v * inv), 1e-2);
    assert.equal(F.rmsNorm(x.double()).dtype, "float64");
  });

  test("softmax, logSoftmax", () => {
    const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
    const sm = [1, 2, 3].map((v) => Math.exp(v) / z);
    expectValues(F.softmax(T([1, 2, 3]), 0), sm, 1e-6);
    expectValues(F.logSoftmax(T([1, 2, 3]), -1), sm.map(Math.log), 1e-6);
    expectTensor(F.softmax(T([[1, 2, 3], [0, 0, 0]]), 1), [2, 3], [...sm, 1 / 3, 1 / 3, 1 / 3], 1e-6);
    expectValues(F.softmax(T([[1, 1], [2, 2]]), 0), [1 - sigmoid(1), 1 - sigmoid(1), sigmoid(1), sigmoid(1)], 1e-6);
    expectValues(F.softmax(T([1000, 1000]), 0), [0.5, 0.5], 1e-6); // stable
    assert.equal(F.softmax(T([1, 2]).to("bfloat16"), 0, "float32").dtype, "float32");
  });

  describe("crossEntropy", () => {
    const logits = () => T([[1, 2, 3], [1, 0, -1], [0.5, 0.5, 2]]);
    const logp = (row: number[]) => { const m = Math.log(row.reduce((a, v) => a + Math.exp(v), 0)); return row.map((v) => v - m); };
    const rows = [[1, 2, 3], [1, 0, -1], [0.5, 0.5, 2]].map(logp);
    /** (1−ε)·(−log p_y) + ε/C·Σ_c(−log p_c), averaged over targets that are not ignored */
    const ref = (targets: number[], eps: number, ignore: number) => {
      let s = 0, n = 0;
      targets.forEach((y, i) => {
        if (y === ignore) return;
        const lp = rows[i]!;
        s += (1 - eps) * -lp[y]! + (eps / 3) * lp.reduce((a, v) => a - v, 0);
        n++;
      });
      return s / n;
    };

    test("mean over all targets", () => {
      expectValues(F.crossEntropy(logits(), T([2, 0, 1], i64)), [ref([2, 0, 1], 0, -100)], 1e-6);
    });
    test("ignoreIndex (default −100) leaves targets out of the mean", () => {
      const y = T([2, -100, 0], i64);
      expectValues(F.crossEntropy(logits(), y), [ref([2, -100, 0], 0, -100)], 1e-6);
      // PyTorch 1.13: F.cross_entropy(logits, torch.tensor([2, -100, 0])) = 1.1382935047149658
      expectValues(F.crossEntropy(logits(), y), [1.1382935047149658], 1e-6);
      expectValues(F.crossEntropy(logits(), T([2, 1, 0], i64), { ignoreIndex: 1 }), [ref([2, 1, 0], 0, 1)], 1e-6);
    });
    test("labelSmoothing, with ignoreIndex", () => {
      const y = T([2, -100, 0], i64);
      expectValues(F.crossEntropy(logits(), y, { labelSmoothing: 0.1 }), [ref([2, -100, 0], 0.1, -100)], 1e-6);
      // PyTorch 1.13: F.cross_entropy(logits, torch.tensor([2, 1, 0]), ignore_index=1, label_smoothing=0.2)
      expectValues(F.crossEntropy(logits(), T([2, 1, 0], i64), { ignoreIndex: 1, labelSmoothing: 0.2 }), [1.1882935762405396], 1e-6);
      expectValues(F.crossEntropy(logits(), T([2, 1, 0], i64), { ignoreIndex: 1, labelSmoothing: 0.2 }), [ref([2, 1, 0], 0.2, 1)], 1e-6);
    });
    test("reductions sum and none", () => {
      const y = T([2, -100, 0], i64);
      const none = F.crossEntropy(logits(), y, { reduction: "none", labelSmoothing: 0.1 });
      assert.deepEqual(none.shape, [3]);
      // PyTorch 1.13: reduction='none', label_smoothing=0.1
      expectValues(none, [0.5076059103012085, 0, 1.8189811706542969], 1e-6);
      expectValues(F.crossEntropy(logits(), y, { reduction: "sum", labelSmoothing: 0.1 }), [2 * ref([2, -100, 0], 0.1, -100)], 1e-6);
    });
    test("class weights and probability targets", () => {
      // weighted mean: Σ w_y·(−log p_y) / Σ w_y
      const w = [1, 2, 0.5];
      const y = [2, 0, 1];
      const num = y.reduce((a, c, i) => a - w[c]! * rows[i]![c]!, 0), den = y.reduce((a, c) => a + w[c]!, 0);
      expectValues(F.crossEntropy(logits(), T(y, i64), { weight: T(w) }), [num / den], 1e-6);
      // one-hot probabilities equal class indices
      const probs = T([[0, 0, 1], [1, 0, 0], [0, 1, 0]]);
      expectValues(F.crossEntropy(logits(), probs), [ref([2, 0, 1], 0, -100)], 1e-6);
    });
  });

  test("mseLoss, smoothL1Loss, binaryCrossEntropyWithLogits", () => {
    const a = T([0.5, 3]), b = T([0, 1]);
    expectValues(F.mseLoss(a, b), [(0.25 + 4) / 2]);
    expectValues(F.mseLoss(a, b, "sum"), [4.25]);
    expectTensor(F.mseLoss(a, b, "none"), [2], [0.25, 4]);
    // |d| < β: 0.5·d²/β, else |d| − β/2. d = [0.5, 2]
    expectValues(F.smoothL1Loss(a, b), [(0.125 + 1.5) / 2]);
    expectValues(F.smoothL1Loss(a, b, { beta: 0.5 }), [(0.25 + 1.75) / 2]);
    expectValues(F.smoothL1Loss(a, b, { reduction: "sum", beta: 4 }), [(0.5 * 0.25) / 4 + (0.5 * 4) / 4]);
    const bce = (x: number, y: number) => -(y * Math.log(sigmoid(x)) + (1 - y) * Math.log(1 - sigmoid(x)));
    expectValues(F.binaryCrossEntropyWithLogits(T([0.5, -1]), T([1, 0])), [(bce(0.5, 1) + bce(-1, 0)) / 2], 1e-6);
  });

  test("cosineSimilarity, normalize", () => {
    expectValues(F.cosineSimilarity(T([[1, 0], [1, 1]]), T([[1, 1], [-1, -1]])), [Math.SQRT1_2, -1], 1e-6);
    expectValues(F.cosineSimilarity(T([1, 2, 3]), T([2, 4, 6]), 0), [1], 1e-6);
    expectTensor(F.normalize(T([[3, 4], [0, 0]])), [2, 2], [0.6, 0.8, 0, 0], 1e-7);
    expectValues(F.normalize(T([[3, 4], [1, 0]]), { dim: 0 }), [3 / Math.sqrt(10), 1, 1 / Math.sqrt(10), 0], 1e-6);
    expectValues(F.normalize(T([[3, -4]]), { p: 1 }), [3 / 7, -4 / 7], 1e-6);
  });

  test("dropout: train zeroes ≈ p and scales survivors by 1/(1−p); eval is the identity", () => {
    torch.manualSeed(1234);
    const x = torch.ones([100, 100]);
    const p = 0.3;
    const y = values(F.dropout(x, p, true));
    const zeros = y.filter((v) => v === 0).length / y.length;
    assert.ok(Math.abs(zeros - p) < 0.02, `fraction zeroed ${zeros}, expected ≈ ${p}`);
    assert.ok(y.every((v) => v === 0 || Math.abs(v - 1 / (1 - p)) < 1e-6), "survivors are scaled by 1/(1−p)");
    const e = T([1, -2, 3]);
    expectValues(F.dropout(e, p, false), [1, -2, 3]);
    expectValues(F.dropout(e, 0, true), [1, -2, 3]);
    expectValues(F.dropout(e, 1, true), [0, 0, 0]);
    assert.throws(() => F.dropout(e, 1.5), /p must be in \[0, 1\]/);
  });

  test("conv2d vs hand sums (stride, padding, bias, channels, groups)", () => {
    const x = torch.arange(9).view(1, 1, 3, 3).float(); // [[0,1,2],[3,4,5],[6,7,8]]
    const w = T([[[[1, 2], [3, 4]]]]);
    // top-left window: 0·1 + 1·2 + 3·3 + 4·4 = 27
    expectTensor(F.conv2d(x, w), [1, 1, 2, 2], [27, 37, 57, 67]);
    // padding 1, stride 2, bias 1: corner windows see one or four real pixels
    expectTensor(F.conv2d(x, w, T([1]), { stride: 2, padding: 1 }), [1, 1, 2, 2], [0 * 4 + 1, 1 * 3 + 2 * 4 + 1, 3 * 2 + 6 * 4 + 1, 4 + 10 + 21 + 32 + 1]);
    // two input channels summed, two output channels
    const x2 = torch.cat([x, x.mul(10)], 1); // [1, 2, 3, 3]
    const w2 = T([[[[1]], [[1]]], [[[1]], [[-1]]]]); // [2, 2, 1, 1]
    const y2 = F.conv2d(x2, w2);
    assert.deepEqual(y2.shape, [1, 2, 3, 3]);
    expectValues(y2.select(1, 0), values(x).map((v) => 11 * v));
    expectValues(y2.select(1, 1), values(x).map((v) => -9 * v));
    // groups 2: each channel convolved alone
    const y3 = F.conv2d(x2, T([[[[2]]], [[[3]]]]), null, { groups: 2 });
    expectValues(y3.select(1, 1), values(x).map((v) => 30 * v));
    // dilation 2 on a 3×3 kernel footprint picks the corners
    expectValues(F.conv2d(x, T([[[[1, 1], [1, 1]]]]), null, { dilation: 2 }), [0 + 2 + 6 + 8]);
  });

  test("conv3d vs hand sums", () => {
    const x = torch.arange(8).view(1, 1, 2, 2, 2).float();
    expectTensor(F.conv3d(x, torch.ones([1, 1, 2, 2, 2])), [1, 1, 1, 1, 1], [28]);
    expectTensor(F.conv3d(x, torch.ones([1, 1, 1, 1, 1]).mul(2), T([0.5])), [1, 1, 2, 2, 2], values(x).map((v) => 2 * v + 0.5));
    // kernel [2, 1, 1] sums along time: x[0] + x[1]
    expectTensor(F.conv3d(x, torch.ones([1, 1, 2, 1, 1])), [1, 1, 1, 2, 2], [4, 6, 8, 10]);
    // padding 1 on W only (x[t][h][w] = 4t + 2h + w): the edge windows see one column, w = 0 or w = 1
    const p = F.conv3d(x, torch.ones([1, 1, 2, 2, 2]), null, { padding: [0, 0, 1] });
    expectTensor(p, [1, 1, 1, 1, 3], [0 + 2 + 4 + 6, 28, 1 + 3 + 5 + 7]);
  });

  test("adaptiveAvgPool2d, avgPool2d, maxPool2d", () => {
    const x = torch.arange(16).view(1, 1, 4, 4).float();
    expectTensor(F.adaptiveAvgPool2d(x, 2), [1, 1, 2, 2], [2.5, 4.5, 10.5, 12.5]);
    expectTensor(F.adaptiveAvgPool2d(x, 1), [1, 1, 1, 1], [7.5]);
    // 3 -> 2: overlapping windows rows/cols [0, 2) and [1, 3)
    const y = torch.arange(9).view(1, 1, 3, 3).float();
    expectTensor(F.adaptiveAvgPool2d(y, [2, 2]), [1, 1, 2, 2], [2, 3, 5, 6]);
    expectTensor(F.adaptiveAvgPool2d(y, [1, 3]), [1, 1, 1, 3], [3, 4, 5]);
    expectTensor(F.avgPool2d(x, 2), [1, 1, 2, 2], [2.5, 4.5, 10.5, 12.5]);
    expectTensor(F.maxPool2d(x, 2), [1, 1, 2, 2], [5, 7, 13, 15]);
    expectTensor(F.maxPool2d(y, 2, 1), [1, 1, 2, 2], [4, 5, 7, 8]);
  });

  describe("interpolate", () => {
    const x = () => T([[[[1, 2], [3, 4]]]]);
    test("bilinear, align corners: a linear ramp is reproduced exactly", () => {
      // the 2×2 input is the plane 1 + (2·row + col); sampled at row, col ∈ {0, 0.5, 1}
      expectTensor(F.interpolate(x(), [3, 3], { mode: "bilinear", alignCorners: true }), [1, 1, 3, 3], [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4], 1e-6);
      // on a wider ramp (0..3 along W) to 7 columns: steps of 0.5
      const ramp = torch.arange(4).float().view(1, 1, 1, 4).expand(1, 1, 2, 4);
      expectValues(F.interpolate(ramp, [2, 7], { mode: "bilinear", alignCorners: true }).select(2, 0).reshape(-1), [0, 0.5, 1, 1.5, 2, 2.5, 3], 1e-6);
    });
    test("bilinear, half-pixel centres (alignCorners false)", () => {
      // src = (dst + 0.5)·in/out − 0.5, clamped at 0: for 2 -> 4 that is [0, 0.25, 0.75, 1]
      expectTensor(F.interpolate(x(), [4, 4], { mode: "bilinear" }), [1, 1, 4, 4],
        [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4], 1e-6);
      // 2 -> 3: src [−1/6 -> 0, 0.5, 7/6 -> 1]
      expectValues(F.interpolate(x(), [3, 3], { mode: "bilinear", alignCorners: false }), [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4], 1e-6);
      // a constant image stays constant at any size
      expectValues(F.interpolate(torch.full([1, 1, 3, 2], 5), [5, 7], { mode: "bilinear" }), Array(35).fill(5), 1e-6);
    });
    test("bicubic (align corners true and false)", () => {
      // with align corners the cubic convolution reproduces a linear ramp at its samples
      expectValues(F.interpolate(x(), [3, 3], { mode: "bicubic", alignCorners: true }), [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4], 1e-6);
      // PyTorch 1.13: F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(3, 3), mode='bicubic', align_corners=False)
      expectValues(F.interpolate(x(), [3, 3], { mode: "bicubic" }), [
        0.7395836114883423, 1.3263890743255615, 1.9131948947906494, 1.9131946563720703, 2.5, 3.086805820465088,
        3.086806058883667, 3.6736111640930176, 4.260416507720947,
      ], 1e-6);
      // PyTorch 1.13: F.interpolate(torch.arange(9.).reshape(1, 1, 3, 3), size=(2, 2), mode='bicubic', align_corners=False)
      expectValues(F.interpolate(torch.arange(9).float().view(1, 1, 3, 3), [2, 2], { mode: "bicubic" }), [0.765625, 2.3828125, 5.6171875, 7.234375], 1e-6);
    });
    test("nearest", () => {
      expectTensor(F.interpolate(x(), [4, 4]), [1, 1, 4, 4], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
      assert.throws(() => F.interpolate(T([1, 2]), [2, 2]), /expected a 4-D/);
    });
  });

  describe("scaledDotProductAttention", () => {
    /** softmax(q kᵀ·scale + mask) v composed from other ops. mask: bool keep, or additive float */
    const reference = (q: Tensor, k: Tensor, v: Tensor, mask?: Tensor, scale?: number) => {
      let s = q.matmul(k.mT).mul(scale ?? 1 / Math.sqrt(q.size(-1)));
      if (mask) s = mask.dtype === "bool" ? s.maskedFill(mask.logicalNot(), -Infinity) : s.add(mask);
      return F.softmax(s, -1).matmul(v);
    };
    const qkv = () => {
      const g = new torch.Generator(7);
      return [2, 2, 2].map(() => torch.randn([1, 2, 3, 4], { generator: g, dtype: "float64" })) as [Tensor, Tensor, Tensor];
    };

    test("no mask equals the composed reference; explicit scale", () => {
      const [q, k, v] = qkv();
      expectValues(F.scaledDotProductAttention(q, k, v), values(reference(q, k, v)), 1e-12);
      expectValues(F.scaledDotProductAttention(q, k, v, { scale: 0.3 }), values(reference(q, k, v, undefined, 0.3)), 1e-12);
    });
    test("single key: the output is that key's value", () => {
      const q = T([[[1, 2]]]), k = T([[[3, 4]]]), v = T([[[5, 6, 7]]]);
      expectTensor(F.scaledDotProductAttention(q, k, v), [1, 1, 3], [5, 6, 7], 1e-7);
    });
    test("causal: query i sees keys 0..i", () => {
      const [q, k, v] = qkv();
      const keep = torch.ones([3, 3], { dtype: "bool" }).tril();
      const y = F.scaledDotProductAttention(q, k, v, { isCausal: true });
      expectValues(y, values(reference(q, k, v, keep)), 1e-12);
      // the first query attends only to the first key
      expectValues(y.select(2, 0), values(v.select(2, 0)), 1e-12);
      assert.throws(() => F.scaledDotProductAttention(q, k, v, { isCausal: true, attnMask: keep }), /either a mask or causal/);
    });
    test("bool mask (true = attend) and additive float mask", () => {
      const [q, k, v] = qkv();
      const keep = T([[true, false, true], [true, true, false], [false, false, true]]);
      const yb = F.scaledDotProductAttention(q, k, v, { attnMask: keep });
      expectValues(yb, values(reference(q, k, v, keep)), 1e-12);
      // a row with a single allowed key copies that key's value
      expectValues(yb.select(2, 2), values(v.select(2, 2)), 1e-12);
      const add = T([[0, -1, 0.5], [2, 0, 0], [0, 0, 0]], f64);
      expectValues(F.scaledDotProductAttention(q, k, v, { attnMask: add }), values(reference(q, k, v, add)), 1e-12);
      // −∞ where the bool mask is false gives the same result
      const inf = torch.zeros([3, 3], f64).maskedFill(keep.logicalNot(), -Infinity);
      expectValues(F.scaledDotProductAttention(q, k, v, { attnMask: inf }), values(yb), 1e-12);
      // a mask broadcast over the head dim: [2, 1, 3] per head
      const perHead = torch.stack([keep.select(0, 0).unsqueeze(0), keep.select(0, 2).unsqueeze(0)]).unsqueeze(0); // [1, 2, 1, 3]
      expectValues(F.scaledDotProductAttention(q, k, v, { attnMask: perHead }), values(reference(q, k, v, perHead)), 1e-12);
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("autograd", () => {
  test("autocast scopes nest, restore on exit and on error, and leave CPU tensors in float32", () => {
    assert.equal(torch.isAutocastEnabled(), false);
    const x = T([[1, 2], [3, 4]]);
    const y = torch.autocast(() => {
      assert.equal(torch.isAutocastEnabled(), true);
      torch.autocast(() => assert.equal(torch.isAutocastEnabled(), true), "float16");
      assert.equal(torch.isAutocastEnabled(), true, "the inner scope restores the outer state");
      return x.matmul(x);
    });
    assert.equal(y.dtype, "float32");
    assert.equal(torch.isAutocastEnabled(), false);
    assert.throws(() => torch.autocast(() => { throw new Error("inside"); }), /inside/);
    assert.equal(torch.isAutocastEnabled(), false);
  });

  test("backward of a scalar, and with a gradient argument", () => {
    const x = T([1, 2, 3], { requiresGrad: true });
    assert.equal(x.grad, null);
    x.mul(x).sum().backward();
    expectValues(x.grad!, [2, 4, 6]);
    const y = T([1, 2, 3], { requiresGrad: true });
    y.mul(2).backward(T([1, 0.5, 0]));
    expectValues(y.grad!, [2, 1, 0]);
    assert.throws(() => y.mul(2).backward(), /only for scalar outputs/);
  });

  test("gradients accumulate; retainGraph allows a second backward", () => {
    const x = T([1, 2, 3], { requiresGrad: true });
    const loss = x.pow(2).sum();
    loss.backward(undefined, { retainGraph: true });
    loss.backward();
    expectValues(x.grad!, [4, 8, 12]);
    assert.throws(() => loss.backward(), /second time/);
    x.grad = null;
    assert.equal(x.grad, null);
    x.mul(3).sum().backward();
    expectValues(x.grad!, [3, 3, 3]);
  });

  test("torch.autograd.grad leaves .grad alone; createGraph gives second derivatives", () => {
    const x = T([1, 2, 3], { requiresGrad: true });
    const [g] = torch.autograd.grad(x.pow(3).sum(), x, { createGraph: true });
    expectValues(g!, [3, 12, 27]);
    assert.equal(x.grad, null);
    const [g2] = torch.autograd.grad(g!.sum(), [x]);
    expectValues(g2!, [6, 12, 18]);
    const z = T([1], { requiresGrad: true });
    assert.throws(() => torch.autograd.grad(x.sum(), [x, z]), /not have been used/);
    const [gx, gz] = torch.autograd.grad(x.sum(), [x, z], { allowUnused: true });
    expectValues(gx!, [1, 1, 1]);
    assert.equal(gz, null);
    const [go] = torch.autograd.grad([x.mul(2)], [x], { gradOutputs: [T([1, 2, 3])] });
    expectValues(go!, [2, 4, 6]);
  });

  test("detach, requiresGrad_, isLeaf, gradFn, retainGrad", () => {
    const x = torch.ones([2]);
    assert.equal(x.requiresGrad, false);
    assert.equal(x.requiresGrad_(), x);
    assert.equal(x.requiresGrad, true);
    assert.equal(x.isLeaf, true);
    assert.equal(x.gradFn, null);
    const y = x.mul(2);
    assert.equal(y.isLeaf, false);
    assert.equal(y.gradFn, "MulBackward0");
    y.retainGrad();
    const d = y.detach();
    assert.equal(d.requiresGrad, false);
    assert.equal(d.isLeaf, true);
    y.mul(d).sum().backward(); // d is a constant: d(y·d)/dy = d = 2
    expectValues(y.grad!, [2, 2]);
    expectValues(x.grad!, [4, 4]);
    x.requiresGrad_(false);
    assert.equal(x.requiresGrad, false);
    // detach shares storage
    const s = T([1, 2]);
    s.detach().add_(1);
    expectValues(s, [2, 3]);
  });

  test("noGrad / enableGrad scopes, restored after a throw", () => {
    const x = T([1, 2], { requiresGrad: true });
    assert.equal(torch.isGradEnabled(), true);
    const y = torch.noGrad(() => {
      assert.equal(torch.isGradEnabled(), false);
      const inner = torch.enableGrad(() => x.mul(2));
      assert.equal(inner.requiresGrad, true);
      return x.mul(2);
    });
    assert.equal(y.requiresGrad, false);
    assert.equal(torch.isGradEnabled(), true);
    assert.throws(() => torch.noGrad(() => { throw new Error("boom"); }), /boom/);
    assert.equal(torch.isGradEnabled(), true, "noGrad restores the mode when fn throws");
  });

  test("in-place updates on leaves under noGrad: add_, sub_, mul_, div_, addcmul_, addcdiv_, lerp_", () => {
    const p = T([1, 2, 3], { requiresGrad: true });
    assert.throws(() => p.add_(1), /leaf Variable that requires grad/);
    torch.noGrad(() => {
      p.add_(T([1, 1, 1]), -0.5);
      expectValues(p, [0.5, 1.5, 2.5]);
      p.mul_(2);
      expectValues(p, [1, 3, 5]);
      p.sub_(1).div_(2);
      expectValues(p, [0, 1, 2]);
      p.addcmul_(T([1, 2, 3]), T([2, 2, 2]), 0.5); // p + 0.5·t1·t2
      expectValues(p, [1, 3, 5]);
      p.addcdiv_(T([2, 4, 6]), T([2, 2, 2]), -1); // p − t1/t2
      expectValues(p, [0, 1, 2]);
      p.lerp_(T([4, 5, 6]), 0.25); // p + 0.25·(end − p)
      expectValues(p, [1, 2, 3]);
      p.clamp_(1.5, 2.5);
      expectValues(p, [1.5, 2, 2.5]);
      p.copy_(T([7, 8, 9]));
      p.pow_(2).sqrt_();
      expectValues(p, [7, 8, 9], 1e-7);
      p.fill_(0.5);
      expectValues(p, [0.5, 0.5, 0.5]);
      p.zero_();
      expectValues(p, [0, 0, 0]);
    });
    assert.equal(p.isLeaf, true);
    assert.equal(p.requiresGrad, true);
    p.add(1).sum().backward();
    expectValues(p.grad!, [1, 1, 1]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("errors", () => {
  test("a matmul shape mismatch throws an Error with torch's message", () => {
    const a = T([[1, 2, 3], [4, 5, 6]]);
    assert.throws(() => a.matmul(a), (e: unknown) => e instanceof Error && /mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/.test(e.message));
    assert.throws(() => a.add(T([1, 2])), /size of tensor a \(3\) must match the size of tensor b \(2\)/);
    assert.throws(() => a.view(4), /shape '\[4\]' is invalid for input of size 6/);
  });

  test("use of a disposed tensor throws", () => {
    const t = T([1, 2]);
    t.dispose();
    assert.equal(t.disposed, true);
    assert.throws(() => t.exp(), /use of a disposed tensor/);
    assert.throws(() => t.add(1), /use of a disposed tensor/);
    assert.throws(() => T([1, 2]).mul(t), /use of a disposed tensor/);
    const idx = T([0], i64);
    idx.dispose();
    assert.throws(() => T([1, 2]).index([idx]), /use of a disposed tensor/, "a disposed index is an error, not a full slice");
    assert.throws(() => t.matmul(T([1, 2])), /use of a disposed tensor/);
    assert.throws(() => t.shape, /use of a disposed tensor/);
    assert.throws(() => torch.cat([t, t]), /disposed tensor/);
    t.dispose(); // disposing twice is harmless
    let inner: Tensor | undefined;
    const kept = torch.scope(() => { inner = torch.ones([1]); return torch.zeros([1]); });
    assert.equal(inner!.disposed, true, "a scope frees what it does not return");
    assert.equal(kept.disposed, false);
    assert.throws(() => inner!.item(), /disposed/);
  });

  test("item() on a multi-element tensor throws", () => {
    assert.throws(() => T([1, 2]).item(), /a tensor with 2 elements cannot be converted to a number/);
    assert.equal(T([[4]]).item(), 4);
  });

  test("a scope returning a Promise is refused", () => {
    assert.throws(() => torch.scope(() => Promise.resolve(1)), /returned a Promise/);
  });

  test("persist takes a tensor out of every enclosing scope; keep only out of the innermost", () => {
    let kept: Tensor | undefined, persisted: Tensor | undefined;
    torch.scope(() => {
      torch.scope(() => {
        kept = torch.keep(torch.ones([1]));
        persisted = torch.persist(torch.ones([1]));
      });
      assert.equal(kept!.disposed, false, "keep: alive in the enclosing scope");
    });
    assert.equal(kept!.disposed, true, "keep: freed by the outer scope");
    assert.equal(persisted!.disposed, false, "persist: no scope frees it");
    persisted!.dispose();
  });
});

// ---------------------------------------------------------------------------------------------

describe("random state", () => {
  test("manualSeed makes draws repeat", () => {
    torch.manualSeed(99);
    const a = values(torch.randn([5]));
    const b = values(torch.rand([5]));
    torch.manualSeed(99);
    assert.deepEqual(values(torch.randn([5])), a);
    assert.deepEqual(values(torch.rand([5])), b);
    torch.manualSeed(100);
    assert.notDeepEqual(values(torch.randn([5])), a);
    assert.throws(() => torch.manualSeed(-1), /non-negative integer/);
  });

  test("getRngState / setRngState replays the same draws", () => {
    torch.manualSeed(5);
    torch.randn([3]);
    const state = torch.getRngState();
    assert.equal(state.dtype, "uint8");
    assert.equal(state.numel(), 5056, "the same 5056 bytes as torch.get_rng_state() in PyTorch 1.13");
    const a = values(torch.randn([4]));
    const r = values(torch.randint(0, 1000, [4]));
    torch.setRngState(state);
    assert.deepEqual(values(torch.randn([4])), a);
    assert.deepEqual(values(torch.randint(0, 1000, [4])), r);
  });

  test("Generator: PyTorch's stream, independence from the global generator, state get/set", () => {
    // torch.randn(3, generator=torch.Generator().manual_seed(42)) in PyTorch 1.13
    const g = new torch.Generator(42);
    expectValues(torch.randn([3], { generator: g }), [0.33669036626815796, 0.12880940735340118, 0.23446236550807953]);
    g.manualSeed(42);
    expectValues(torch.randn([3], { generator: g }), [0.33669036626815796, 0.12880940735340118, 0.23446236550807953]);
    // drawing from g does not advance the default generator
    torch.manualSeed(0);
    torch.rand([10], { generator: g });
    expectValues(torch.randn([3]), [1.5409960746765137, -0.293428897857666, -2.1787893772125244]);
    const s = g.getState();
    const a = values(torch.rand([4], { generator: g }));
    const p = values(torch.randperm(6, { generator: g }));
    g.setState(s);
    assert.deepEqual(values(torch.rand([4], { generator: g })), a);
    assert.deepEqual(values(torch.randperm(6, { generator: g })), p);
    assert.deepEqual([...p].sort(), [0, 1, 2, 3, 4, 5]);
    // two generators with one seed agree; different seeds differ
    const h1 = new torch.Generator(3), h2 = new torch.Generator(3), h3 = new torch.Generator(4);
    const d1 = values(torch.randint(0, 1 << 30, [4], { generator: h1 }));
    assert.deepEqual(values(torch.randint(0, 1 << 30, [4], { generator: h2 })), d1);
    assert.notDeepEqual(values(torch.randint(0, 1 << 30, [4], { generator: h3 })), d1);
    // in-place fills and sampling take generators too
    const u1 = torch.empty([5]).uniform_(-1, 1, new torch.Generator(8));
    const u2 = torch.empty([5]).uniform_(-1, 1, new torch.Generator(8));
    assert.deepEqual(values(u1), values(u2));
    assert.ok(values(u1).every((v) => v >= -1 && v < 1));
    const n1 = torch.empty([5]).normal_(3, 0.1, new torch.Generator(8));
    assert.ok(values(n1).every((v) => Math.abs(v - 3) < 1));
    const m = torch.multinomial(T([0, 1, 0]), 2, { replacement: true, generator: new torch.Generator(1) });
    expectValues(m, [1, 1]);
    const bern = torch.bernoulli(torch.zeros([1000]), 0.25, { generator: new torch.Generator(2) });
    const ones = values(bern).filter((v) => v === 1).length;
    assert.ok(ones > 200 && ones < 300, `bernoulli(0.25) gave ${ones}/1000 ones`);
  });
});

it("frees every tensor the tests created", () => {
  assert.equal(torch.memory().tensors, liveAtStart, "live tensors after the suite");
});
