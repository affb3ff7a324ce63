// The standard layers (shapes, values against F.* and hand-worked numbers, PyTorch's
// initialisation bounds, seeded reproducibility) and nn.init.
// Every module a test builds is disposed when the test ends; the last test checks for leaks.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { torch, nn, F, type Tensor } from "../index.js";

const liveAtStart = torch.memory().tensors;
const made: nn.Module[] = [];
function own<M extends nn.Module>(m: M): M { made.push(m); return m; }
const test = (name: string, body: () => void): void => {
  it(name, () => {
    try {
      torch.scope(body);
    } finally {
      for (const m of made.splice(0)) for (const p of m.parameters()) p.dispose();
    }
  });
};

const values = (t: Tensor): number[] => Array.from(t.toFloat64Values());
const i64 = { dtype: "int64" } as const;

function close(got: Tensor | number[], expected: number[], tol = 1e-6): void {
  const g = Array.isArray(got) ? got : values(got);
  assert.equal(g.length, expected.length, `got ${g.length} values, expected ${expected.length}`);
  g.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) <= tol * Math.max(1, Math.abs(expected[i]!)),
    `element ${i}: got ${v}, expected ${expected[i]} (tol ${tol})\n  got      [${g.join(", ")}]\n  expected [${expected.join(", ")}]`));
}
const maxAbs = (t: Tensor): number => t.abs().amax().item();
/** Sets a parameter's values (no graph). */
const set = (p: Tensor, data: number[] | number[][]): void => { torch.noGrad(() => p.copy_(torch.tensor(data))); };

describe("Linear", () => {
  test("y = x Wᵀ + b, by hand and against F.linear, with leading batch dims", () => {
    const lin = own(new nn.Linear(2, 3));
    assert.deepEqual(lin.weight.shape, [3, 2]);
    assert.deepEqual(lin.bias!.shape, [3]);
    set(lin.weight, [[1, 2], [3, 4], [5, 6]]);
    set(lin.bias!, [0.5, -1, 2]);
    const x = torch.tensor([[1, 1], [2, -1]]);
    // [1,1]: [3, 7, 11] + b ; [2,-1]: [0, 2, 4] + b
    close(lin.forward(x), [3.5, 6, 13, 0.5, 1, 6], 0);
    const xb = torch.randn([2, 5, 2], { generator: new torch.Generator(0) });
    const y = lin.forward(xb);
    assert.deepEqual(y.shape, [2, 5, 3]);
    close(y, values(F.linear(xb, lin.weight, lin.bias)), 0);
  });

  test("bias: false has no bias parameter", () => {
    const lin = own(new nn.Linear(2, 3, { bias: false }));
    assert.equal(lin.bias, null);
    assert.deepEqual(lin.namedParameters().map(([n]) => n), ["weight"]);
    set(lin.weight, [[1, 2], [3, 4], [5, 6]]);
    close(lin.forward(torch.tensor([1, 1])), [3, 7, 11], 0);
  });

  test("init: every weight and bias within ±1/√in, filling most of the range", () => {
    const lin = own(new nn.Linear(16, 64, { generator: new torch.Generator(7) }));
    const bound = 1 / Math.sqrt(16);
    const wMax = maxAbs(lin.weight), bMax = maxAbs(lin.bias!);
    assert.ok(wMax <= bound, `|w| max ${wMax} > 1/√16`);
    assert.ok(bMax <= bound, `|b| max ${bMax} > 1/√16`);
    assert.ok(wMax > 0.9 * bound, `1024 uniform weights should reach near the bound, max ${wMax}`);
    assert.ok(bMax > 0.5 * bound, `64 uniform biases should spread, max ${bMax}`);
    const mean = lin.weight.mean().item();
    assert.ok(Math.abs(mean) < 0.02, `uniform around 0, mean ${mean}`);
  });

  test("a seeded generator gives the same weights for the same seed and different ones for another", () => {
    const a = own(new nn.Linear(4, 3, { generator: new torch.Generator(123) }));
    const b = own(new nn.Linear(4, 3, { generator: new torch.Generator(123) }));
    const c = own(new nn.Linear(4, 3, { generator: new torch.Generator(124) }));
    assert.deepEqual(values(a.weight), values(b.weight));
    assert.deepEqual(values(a.bias!), values(b.bias!));
    assert.notDeepEqual(values(a.weight), values(c.weight));
    // the global generator does not affect a seeded layer
    torch.manualSeed(0);
    const d = own(new nn.Linear(4, 3, { generator: new torch.Generator(123) }));
    assert.deepEqual(values(d.weight), values(a.weight));
    // and seeding the global generator makes unseeded layers reproducible
    torch.manualSeed(5);
    const e = own(new nn.Linear(4, 3));
    torch.manualSeed(5);
    const f = own(new nn.Linear(4, 3));
    assert.deepEqual(values(e.weight), values(f.weight));
  });

  test("dtype option makes float64 parameters", () => {
    const lin = own(new nn.Linear(3, 2, { dtype: "float64" }));
    assert.equal(lin.weight.dtype, "float64");
    assert.equal(lin.bias!.dtype, "float64");
    assert.equal(lin.forward(torch.ones([1, 3], { dtype: "float64" })).dtype, "float64");
  });
});

describe("Conv", () => {
  test("Conv2d 2×2 of ones over a 3×3 ramp sums each window", () => {
    const conv = own(new nn.Conv2d(1, 1, 2));
    assert.deepEqual(conv.weight.shape, [1, 1, 2, 2]);
    torch.noGrad(() => conv.weight.fill_(1));
    torch.noGrad(() => conv.bias!.fill_(0.5));
    const x = torch.arange(9, undefined, 1, { dtype: "float32" }).reshape(1, 1, 3, 3);
    // windows: 0+1+3+4, 1+2+4+5, 3+4+6+7, 4+5+7+8, plus 0.5
    const y = conv.forward(x);
    assert.deepEqual(y.shape, [1, 1, 2, 2]);
    close(y, [8.5, 12.5, 20.5, 24.5], 0);
  });

  test("Conv2d stride, padding and groups: shapes and values against F.conv2d", () => {
    const g = new torch.Generator(1);
    const conv = own(new nn.Conv2d(4, 6, 3, { stride: 2, padding: 1, groups: 2, generator: g }));
    assert.deepEqual(conv.weight.shape, [6, 2, 3, 3]);
    assert.deepEqual(conv.bias!.shape, [6]);
    const x = torch.randn([2, 4, 8, 7], { generator: g });
    const y = conv.forward(x);
    assert.deepEqual(y.shape, [2, 6, 4, 4]); // floor((8 + 2 - 3) / 2) + 1 = 4, floor((7 + 2 - 3) / 2) + 1 = 4
    close(y, values(F.conv2d(x, conv.weight, conv.bias, { stride: 2, padding: 1, groups: 2 })), 0);
    // init bound 1/√fanIn with fanIn = 2 × 3 × 3
    const bound = 1 / Math.sqrt(18);
    assert.ok(maxAbs(conv.weight) <= bound && maxAbs(conv.bias!) <= bound);
    assert.ok(maxAbs(conv.weight) > 0.8 * bound);
    const rect = own(new nn.Conv2d(1, 2, [1, 3], { bias: false, padding: [0, 1] }));
    assert.equal(rect.bias, null);
    assert.deepEqual(rect.forward(torch.zeros([1, 1, 5, 5])).shape, [1, 2, 5, 5]);
  });

  test("Conv2d rejects channels not divisible by groups", () => {
    assert.throws(() => new nn.Conv2d(3, 6, 3, { groups: 2 }), /channels 3→6 not divisible by groups 2/);
  });

  test("Conv3d: [N, Cin, T, H, W] -> [N, Cout, T', H', W'], values against F.conv3d", () => {
    const g = new torch.Generator(2);
    const conv = own(new nn.Conv3d(2, 3, [1, 2, 2], { stride: [1, 2, 2], generator: g }));
    assert.deepEqual(conv.weight.shape, [3, 2, 1, 2, 2]);
    const x = torch.randn([1, 2, 4, 6, 6], { generator: g });
    const y = conv.forward(x);
    assert.deepEqual(y.shape, [1, 3, 4, 3, 3]);
    close(y, values(F.conv3d(x, conv.weight, conv.bias, { stride: [1, 2, 2] })), 0);
    const bound = 1 / Math.sqrt(2 * 1 * 2 * 2);
    assert.ok(maxAbs(conv.weight) <= bound && maxAbs(conv.bias!) <= bound);
    // a 1×1×1 kernel of ones over 2 channels adds them
    const sum = own(new nn.Conv3d(2, 1, 1, { bias: false }));
    torch.noGrad(() => sum.weight.fill_(1));
    close(sum.forward(torch.tensor([[[[[1, 2]]], [[[10, 20]]]]])), [11, 22], 0);
  });
});

describe("Embedding", () => {
  test("forward looks up rows; weights ~ N(0, 1)", () => {
    const emb = own(new nn.Embedding(5, 3, { generator: new torch.Generator(0) }));
    assert.deepEqual(emb.weight.shape, [5, 3]);
    set(emb.weight, [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]]);
    const out = emb.forward(torch.tensor([[4, 0], [2, 2]], i64));
    assert.deepEqual(out.shape, [2, 2, 3]);
    close(out, [4, 4, 4, 0, 0, 0, 2, 2, 2, 2, 2, 2], 0);
    const big = own(new nn.Embedding(100, 50, { generator: new torch.Generator(1) }));
    const std = big.weight.std().item(), mean = big.weight.mean().item();
    assert.ok(Math.abs(std - 1) < 0.05 && Math.abs(mean) < 0.05, `N(0,1): mean ${mean}, std ${std}`);
  });

  test("paddingIdx: that row starts at zero and gets no gradient", () => {
    const emb = own(new nn.Embedding(4, 2, { paddingIdx: 1, generator: new torch.Generator(3) }));
    assert.deepEqual(values(emb.weight.select(0, 1)), [0, 0]);
    assert.ok(values(emb.weight.select(0, 0)).some((v) => v !== 0), "other rows are initialised");
    emb.forward(torch.tensor([1, 0, 1, 3], i64)).sum().backward();
    // row 0 used once, row 1 is padding, row 2 unused, row 3 used once
    close(emb.weight.grad!, [1, 1, 0, 0, 0, 0, 1, 1], 0);
    const plain = own(new nn.Embedding(4, 2));
    plain.forward(torch.tensor([1, 1], i64)).sum().backward();
    close(plain.weight.grad!, [0, 0, 2, 2, 0, 0, 0, 0], 0);
  });

  test("a negative paddingIdx counts from the end, as torch; out of range throws", () => {
    const emb = own(new nn.Embedding(4, 2, { paddingIdx: -1 }));
    assert.equal(emb.paddingIdx, 3);
    assert.deepEqual(values(emb.weight.select(0, 3)), [0, 0]);
    assert.throws(() => new nn.Embedding(4, 2, { paddingIdx: 4 }), /paddingIdx 4 is outside the 4 embeddings/);
  });
});

describe("Parameter", () => {
  test("is a new leaf sharing storage: the source tensor's flags and graph are untouched", () => {
    const x = torch.ones([2], { requiresGrad: true });
    const y = x.mul(2); // non-leaf
    const p = new nn.Parameter(y);
    assert.ok(p.isLeaf && p.requiresGrad);
    assert.ok(!y.isLeaf, "y keeps its history");
    torch.noGrad(() => p.fill_(5));
    assert.deepEqual(values(y), [5, 5], "storage is shared");
    p.dispose();
  });
});

describe("normalisation", () => {
  test("LayerNorm by hand: (x - mean) / √(var + eps) · w + b", () => {
    const ln = own(new nn.LayerNorm(4));
    assert.deepEqual(values(ln.weight!), [1, 1, 1, 1]);
    assert.deepEqual(values(ln.bias!), [0, 0, 0, 0]);
    const x = torch.tensor([[1, 2, 3, 4], [2, 2, 2, 2]]);
    // row 0: mean 2.5, biased var 1.25 ; row 1: constant -> 0
    const s = Math.sqrt(1.25 + 1e-5);
    close(ln.forward(x), [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0, 0, 0, 0], 1e-6);
    set(ln.weight!, [1, 2, 3, 4]);
    set(ln.bias!, [0, 1, 0, -1]);
    close(ln.forward(x), [-1.5 / s, 1 - 1 / s, 1.5 / s, 6 / s - 1, 0, 1, 0, -1], 1e-6);
    close(ln.forward(x), values(F.layerNorm(x, [4], ln.weight, ln.bias)), 0);
  });

  test("LayerNorm without affine or bias; over two dims", () => {
    const plain = own(new nn.LayerNorm([2, 2], 1e-5, { elementwiseAffine: false }));
    assert.equal(plain.weight, null);
    assert.equal(plain.bias, null);
    assert.deepEqual(plain.parameters(), []);
    const s = Math.sqrt(1.25 + 1e-5);
    close(plain.forward(torch.tensor([[[1, 2], [3, 4]]])), [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], 1e-6);
    const noBias = own(new nn.LayerNorm(3, 1e-5, { bias: false }));
    assert.deepEqual(noBias.namedParameters().map(([n]) => n), ["weight"]);
  });

  test("RMSNorm by hand: x / √(mean(x²) + eps) · w", () => {
    const n = own(new nn.RMSNorm(2, 1e-6));
    assert.deepEqual(values(n.weight), [1, 1]);
    set(n.weight, [1, 2]);
    // [3, 4]: mean square 12.5
    const r = Math.sqrt(12.5 + 1e-6);
    close(n.forward(torch.tensor([[3, 4], [0, 0]])), [3 / r, 8 / r, 0, 0], 1e-6);
    close(n.forward(torch.tensor([3, 4])), values(F.rmsNorm(torch.tensor([3, 4]), n.weight, 1e-6)), 0);
    const d = own(new nn.RMSNorm(2, 1e-6, { dtype: "float64" }));
    const y = d.forward(torch.tensor([3, 4], { dtype: "float64" }));
    assert.equal(y.dtype, "float64");
    close(y, [3 / r, 4 / r], 1e-6);
  });
});

describe("Dropout", () => {
  test("training zeroes about p of the elements and scales the rest by 1/(1-p); eval is the identity", () => {
    torch.manualSeed(11);
    const d = own(new nn.Dropout(0.25));
    const x = torch.ones([4000]);
    const y = values(d.forward(x));
    const zeros = y.filter((v) => v === 0).length;
    assert.ok(zeros > 850 && zeros < 1150, `about 1000 of 4000 zeroed, got ${zeros}`);
    assert.ok(y.every((v) => v === 0 || Math.abs(v - 4 / 3) < 1e-6), "kept elements are 1/(1-p)");
    d.eval();
    assert.deepEqual(values(d.forward(x)), values(x));
  });

  test("p = 0 keeps everything, p = 1 drops everything; p outside [0, 1] throws", () => {
    const x = torch.tensor([1, -2, 3]);
    assert.deepEqual(values(own(new nn.Dropout(0)).forward(x)), [1, -2, 3]);
    assert.ok(values(own(new nn.Dropout(1)).forward(x)).every((v) => v === 0), "p = 1 zeroes everything");
    assert.throws(() => new nn.Dropout(1.5), /Dropout: p must be in \[0, 1\], got 1.5/);
    assert.throws(() => new nn.Dropout(-0.1), RangeError);
  });
});

describe("nn.init", () => {
  const gen = (seed: number) => new torch.Generator(seed);

  test("fans as PyTorch: fan_in = size(1) × receptive field; a 1-D tensor is an error", () => {
    assert.deepEqual(nn.init.fans(torch.empty([8, 3])), { fanIn: 3, fanOut: 8 });
    assert.deepEqual(nn.init.fans(torch.empty([6, 2, 3, 5])), { fanIn: 30, fanOut: 90 });
    assert.throws(() => nn.init.fans(torch.empty([5])), (e: Error) => e instanceof RangeError && /need at least 2 dims.*\[5\]/.test(e.message));
    assert.throws(() => nn.init.xavierUniform_(torch.empty([5])), RangeError);
    assert.throws(() => nn.init.kaimingNormal_(torch.empty([5])), RangeError);
  });

  test("calculateGain matches torch.nn.init.calculate_gain", () => {
    assert.equal(nn.init.calculateGain("linear"), 1);
    assert.equal(nn.init.calculateGain("sigmoid"), 1);
    assert.equal(nn.init.calculateGain("tanh"), 5 / 3);
    assert.equal(nn.init.calculateGain("relu"), Math.SQRT2);
    assert.equal(nn.init.calculateGain("selu"), 0.75);
    assert.equal(nn.init.calculateGain("leaky_relu"), Math.sqrt(2 / (1 + 0.01 ** 2)));
    assert.equal(nn.init.calculateGain("leaky_relu", Math.sqrt(5)), Math.sqrt(1 / 3));
  });

  test("xavierUniform_ stays within gain·√(6/(fanIn+fanOut)) and reaches near it", () => {
    const t = torch.empty([64, 32]);
    nn.init.xavierUniform_(t, 2, gen(0));
    const bound = 2 * Math.sqrt(6 / 96);
    const m = maxAbs(t);
    assert.ok(m <= bound && m > 0.95 * bound, `max |w| ${m}, bound ${bound}`);
  });

  test("xavierNormal_ has std gain·√(2/(fanIn+fanOut))", () => {
    const t = torch.empty([200, 100]);
    nn.init.xavierNormal_(t, 1, gen(1));
    const want = Math.sqrt(2 / 300), std = t.std().item();
    assert.ok(Math.abs(std / want - 1) < 0.03, `std ${std}, want ${want}`);
    assert.ok(Math.abs(t.mean().item()) < 0.1 * want, `mean ${t.mean().item()}`);
  });

  test("kaimingUniform_ bound √3·gain/√fan, for fan_in and fan_out", () => {
    const t = torch.empty([50, 200]);
    nn.init.kaimingUniform_(t, { generator: gen(2) }); // leaky_relu, a = 0: gain √2
    let bound = Math.sqrt(3) * Math.SQRT2 / Math.sqrt(200);
    assert.ok(maxAbs(t) <= bound && maxAbs(t) > 0.95 * bound, `fan_in: max ${maxAbs(t)}, bound ${bound}`);
    nn.init.kaimingUniform_(t, { mode: "fan_out", nonlinearity: "relu", generator: gen(3) });
    bound = Math.sqrt(3) * Math.SQRT2 / Math.sqrt(50);
    assert.ok(maxAbs(t) <= bound && maxAbs(t) > 0.95 * bound, `fan_out: max ${maxAbs(t)}, bound ${bound}`);
    nn.init.kaimingUniform_(t, { a: Math.sqrt(5), generator: gen(4) }); // nn.Linear's init: 1/√fanIn
    assert.ok(maxAbs(t) <= 1 / Math.sqrt(200) + 1e-7);
  });

  test("kaimingNormal_ std gain/√fan", () => {
    const t = torch.empty([100, 400]);
    nn.init.kaimingNormal_(t, { nonlinearity: "relu", generator: gen(5) });
    const want = Math.SQRT2 / 20, std = t.std().item();
    assert.ok(Math.abs(std / want - 1) < 0.03, `std ${std}, want ${want}`);
    nn.init.kaimingNormal_(t, { mode: "fan_out", nonlinearity: "linear", generator: gen(6) });
    assert.ok(Math.abs(t.std().item() / 0.1 - 1) < 0.03);
  });

  test("truncNormal_ stays within [a, b] and spans it", () => {
    const t = torch.empty([20000]);
    nn.init.truncNormal_(t, 1, 2, -1, 2, gen(7));
    const lo = t.amin().item(), hi = t.amax().item();
    assert.ok(lo >= -1 && hi <= 2, `range [${lo}, ${hi}] outside [-1, 2]`);
    assert.ok(lo < -0.95 && hi > 1.95, `20000 samples should reach both ends, got [${lo}, ${hi}]`);
    // N(0, 1) truncated to [-2, 2] has std ≈ 0.8796
    const s = torch.empty([20000]);
    nn.init.truncNormal_(s, 0, 1, -2, 2, gen(8));
    assert.ok(Math.abs(s.std().item() - 0.8796) < 0.02, `std ${s.std().item()}`);
    assert.ok(maxAbs(s) <= 2);
  });

  test("uniform_, normal_, constant_, zeros_, ones_ in place; seeded ones reproduce", () => {
    const a = nn.init.uniform_(torch.empty([1000]), -3, -2, gen(9));
    assert.ok(a.amin().item() >= -3 && a.amax().item() <= -2);
    const b = nn.init.uniform_(torch.empty([1000]), -3, -2, gen(9));
    assert.deepEqual(values(a), values(b));
    const n = nn.init.normal_(torch.empty([4000]), 5, 0.5, gen(10));
    assert.ok(Math.abs(n.mean().item() - 5) < 0.05 && Math.abs(n.std().item() - 0.5) < 0.03);
    assert.deepEqual(values(nn.init.constant_(torch.empty([3]), 2.5)), [2.5, 2.5, 2.5]);
    assert.deepEqual(values(nn.init.zeros_(torch.ones([2]))), [0, 0]);
    assert.deepEqual(values(nn.init.ones_(torch.zeros([2]))), [1, 1]);
  });

  test("initialisers on a trainable parameter record no graph", () => {
    const lin = own(new nn.Linear(3, 3));
    nn.init.xavierUniform_(lin.weight);
    nn.init.zeros_(lin.bias!);
    assert.ok(lin.weight.isLeaf && lin.weight.requiresGrad && lin.weight.gradFn === null);
    assert.ok(lin.bias!.isLeaf && lin.bias!.gradFn === null);
    assert.deepEqual(values(lin.bias!), [0, 0, 0]);
  });
});

describe("leaks", () => {
  it("every test above freed its tensors", () => {
    assert.equal(torch.memory().tensors, liveAtStart);
  });
});
