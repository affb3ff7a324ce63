// torch.checkpoint: the same loss and gradients as the plain forward (float64, to 1e-12), random
// ops drawn the same in the rerun, nothing left pending or live after backward.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch, nn, F, Tensor } from "./index.js";

const liveAtStart = torch.memory().tensors;
const f64 = { dtype: "float64" } as const;

/** A pre-norm residual MLP block with dropout: x + W2 · drop(gelu(W1 · LN(x))). */
class Block extends nn.Module {
  ln: nn.LayerNorm;
  fc1: nn.Linear;
  fc2: nn.Linear;
  constructor(d: number, seed: number, readonly p = 0) {
    super();
    const generator = new torch.Generator(seed);
    this.ln = new nn.LayerNorm(d, 1e-5, f64);
    this.fc1 = new nn.Linear(d, 4 * d, { ...f64, generator });
    this.fc2 = new nn.Linear(4 * d, d, { ...f64, generator });
  }
  forward(x: Tensor): Tensor {
    return x.add(this.fc2.forward(F.dropout(F.gelu(this.fc1.forward(this.ln.forward(x))), this.p, this.training)));
  }
}

class Stack extends nn.Module {
  emb: nn.Linear;
  blocks: nn.ModuleList<Block>;
  gradientCheckpointing = false;
  constructor(d: number, n: number, p = 0) {
    super();
    this.emb = new nn.Linear(3, d, { ...f64, generator: new torch.Generator(99) });
    this.blocks = new nn.ModuleList(Array.from({ length: n }, (_, i) => new Block(d, i + 1, p)));
  }
  /** x [B, T, 3] -> loss; the embedding also skips straight to the loss (a history shared with the segments). */
  loss(x: Tensor): Tensor {
    const e = this.emb.forward(x);
    let h = e;
    for (const b of this.blocks) h = this.gradientCheckpointing ? torch.checkpoint((y) => b.forward(y), h) : b.forward(h);
    return h.pow(2).mean().add(e.mean().mul(0.1));
  }
}

/** Loss and every gradient (parameters, then the input) from one forward/backward. */
function run(model: Stack, x: Tensor, seed: number): { loss: number; grads: Map<string, Float64Array>; rngAfter: Float64Array } {
  return torch.scope(() => {
    model.zeroGrad();
    x.grad = null;
    torch.manualSeed(seed);
    const loss = model.loss(x);
    loss.backward();
    const grads = new Map<string, Float64Array>();
    for (const [n, p] of model.namedParameters()) grads.set(n, p.grad!.toFloat64Values());
    grads.set("input", x.grad!.toFloat64Values());
    return { loss: loss.item(), grads, rngAfter: torch.rand([4]).toFloat64Values() };
  });
}

function maxDiff(a: Map<string, Float64Array>, b: Map<string, Float64Array>): number {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  let m = 0;
  for (const [k, va] of a) {
    const vb = b.get(k)!;
    for (let i = 0; i < va.length; i++) m = Math.max(m, Math.abs(va[i]! - vb[i]!));
  }
  return m;
}

test("checkpoint: the loss and every gradient (weights and input) equal the plain forward's", () => {
  const model = new Stack(8, 3);
  const x = torch.randn([2, 5, 3], { ...f64, generator: new torch.Generator(7) }).requiresGrad_();
  const plain = run(model, x, 1);
  model.gradientCheckpointing = true;
  const ckpt = run(model, x, 1);
  assert.equal(torch.pendingCheckpoints(), 0, "backward reran and released every segment");
  assert.ok(Math.abs(plain.loss - ckpt.loss) <= 1e-12, `loss ${plain.loss} vs ${ckpt.loss}`);
  const d = maxDiff(plain.grads, ckpt.grads);
  assert.ok(d <= 1e-12, `largest gradient difference ${d}`);
  x.dispose();
});

test("checkpoint: dropout draws the same mask in the rerun, and the generator ends where the plain run leaves it", () => {
  const model = new Stack(8, 3, 0.3);
  const x = torch.randn([2, 5, 3], { ...f64, generator: new torch.Generator(8) }).requiresGrad_();
  const plain = run(model, x, 5);
  model.gradientCheckpointing = true;
  const ckpt = run(model, x, 5);
  assert.ok(Math.abs(plain.loss - ckpt.loss) <= 1e-12);
  assert.ok(maxDiff(plain.grads, ckpt.grads) <= 1e-12, "a rerun with another dropout mask would give other gradients");
  assert.deepEqual(ckpt.rngAfter, plain.rngAfter, "the rerun must not advance the global generator");
  // A different seed gives a different mask, so the test above can fail.
  const other = run(model, x, 6);
  assert.notEqual(other.loss, ckpt.loss);
  x.dispose();
});

test("checkpoint: the segment's forward frees its intermediates; only the inputs and outputs stay", () => {
  const model = new Stack(16, 4);
  model.gradientCheckpointing = true;
  const x = torch.randn([4, 32, 3], f64);
  const kept = (ckpt: boolean) => torch.scope(() => {
    const e = model.emb.forward(x);
    const before = torch.memory();
    let h = e;
    // Without checkpoint (and without a per-layer scope) each block leaves its intermediates live.
    for (const b of model.blocks) h = ckpt ? torch.checkpoint((y) => b.forward(y), h) : b.forward(h);
    const after = torch.memory();
    return { tensors: after.tensors - before.tensors, bytes: after.bytes - before.bytes };
  });
  const block = 4 * 32 * 16 * 8; // one [4, 32, 16] float64 output
  // Per block: its output, and the segment's aliases of its input and output (handles on storages already counted).
  assert.deepEqual(kept(true), { tensors: 12, bytes: 4 * block });
  const plain = kept(false);
  assert.ok(plain.bytes >= 4 * 10 * block, `plain blocks keep their intermediates: ${plain.bytes} bytes`);
  assert.equal(torch.pendingCheckpoints(), 4, "kept until a backward shows that no graph reaches them");
  torch.scope(() => torch.ones([1]).requiresGrad_().mul(2).backward());
  assert.equal(torch.pendingCheckpoints(), 0, "segments of a forward never backpropagated go at the next backward");
  x.dispose();
});

test("checkpoint: the caller may free a segment's output once the next one has read it (the graph still needs it)", () => {
  const model = new Stack(8, 3);
  const x = torch.randn([2, 5, 3], { ...f64, generator: new torch.Generator(11) });
  const grads = (ckpt: boolean) => torch.scope(() => {
    model.zeroGrad();
    let h = model.emb.forward(x);
    for (const b of model.blocks) {
      const prev = h;
      h = ckpt ? torch.checkpoint((y) => b.forward(y), prev) : b.forward(prev);
      prev.dispose(); // as ViT.features frees each layer's input
    }
    h.pow(2).mean().backward();
    return model.parameters().flatMap((p) => [...p.grad!.toFloat64Values()]);
  });
  const plain = grads(false), ckpt = grads(true);
  assert.ok(plain.every((v, i) => Math.abs(v - ckpt[i]!) <= 1e-12));
  assert.equal(torch.pendingCheckpoints(), 0);
  x.dispose();
});

test("checkpoint: several outputs, an output that needs no grad, and tensors inside an options object", () => {
  const w = torch.randn([4, 4], { ...f64, generator: new torch.Generator(3) }).requiresGrad_();
  const x = torch.randn([3, 4], { ...f64, generator: new torch.Generator(4) }).requiresGrad_();
  const scale = torch.tensor([0.5, 1, 2, 3], f64);
  const f = (a: Tensor, o: { scale: Tensor }): Tensor[] => {
    const y = a.matmul(w).tanh().mul(o.scale);
    return [y, y.sum(-1), a.argmax(-1)];
  };
  const grads = (ckpt: boolean) => torch.scope(() => {
    w.grad = null;
    x.grad = null;
    const [y, s, idx] = ckpt ? torch.checkpoint(f, x, { scale }) : f(x, { scale });
    assert.equal(idx!.requiresGrad, false);
    y!.pow(2).sum().add(s!.exp().sum()).backward();
    return [...w.grad!.toFloat64Values(), ...x.grad!.toFloat64Values()];
  });
  const plain = grads(false), ckpt = grads(true);
  assert.ok(plain.every((v, i) => Math.abs(v - ckpt[i]!) <= 1e-12));
  for (const t of [w, x, scale]) t.dispose();
});

test("checkpoint: with nothing trainable, or with gradients off, no segment is made", () => {
  const x = torch.randn([3, 4], f64);
  torch.scope(() => {
    const y = torch.checkpoint((a) => a.mul(2), x);
    assert.equal(y.requiresGrad, false);
    assert.equal(torch.pendingCheckpoints(), 0);
    const w = torch.ones([4], f64).requiresGrad_();
    const z = torch.noGrad(() => torch.checkpoint((a) => a.mul(w), x));
    assert.equal(z.requiresGrad, false);
    assert.equal(torch.pendingCheckpoints(), 0);
  });
  x.dispose();
});

test("checkpoint: retainGraph lets a second backward rerun the segments (gradients add up)", () => {
  const w = torch.randn([4], { ...f64, generator: new torch.Generator(5) }).requiresGrad_();
  torch.scope(() => {
    const x = torch.randn([3, 4], { ...f64, generator: new torch.Generator(6) });
    const loss = torch.checkpoint((a) => a.mul(w).sin(), x).sum();
    loss.backward(undefined, { retainGraph: true });
    const once = w.grad!.toFloat64Values();
    assert.equal(torch.pendingCheckpoints(), 1);
    loss.backward();
    const twice = w.grad!.toFloat64Values();
    assert.ok(once.every((v, i) => Math.abs(2 * v - twice[i]!) <= 1e-12));
    assert.equal(torch.pendingCheckpoints(), 0);
  });
  w.dispose();
});

test("checkpoint: a checkpoint inside a checkpointed function (nested) gives the plain gradients", () => {
  const w = torch.randn([4, 4], { ...f64, generator: new torch.Generator(9) }).requiresGrad_();
  const x = torch.randn([2, 4], { ...f64, generator: new torch.Generator(10) }).requiresGrad_();
  const inner = (a: Tensor) => a.matmul(w).tanh();
  const grads = (ckpt: boolean) => torch.scope(() => {
    w.grad = null;
    x.grad = null;
    const y = ckpt ? torch.checkpoint((a) => torch.checkpoint(inner, inner(a)).mul(a), x) : inner(inner(x)).mul(x);
    y.sum().backward();
    return [...w.grad!.toFloat64Values(), ...x.grad!.toFloat64Values()];
  });
  const plain = grads(false), ckpt = grads(true);
  assert.ok(plain.every((v, i) => Math.abs(v - ckpt[i]!) <= 1e-12));
  assert.equal(torch.pendingCheckpoints(), 0);
  w.dispose();
  x.dispose();
});

test("setGradientCheckpointing: switches every module that has the field, and refuses a model without one", () => {
  const model = new Stack(4, 1);
  assert.deepEqual(torch.setGradientCheckpointing(model), ["(root)"]);
  assert.equal(model.gradientCheckpointing, true);
  torch.setGradientCheckpointing(model, false);
  assert.equal(model.gradientCheckpointing, false);
  assert.throws(() => torch.setGradientCheckpointing(new Block(4, 1)), /no module with a gradientCheckpointing switch/);
});

test("checkpoint: no tensors leak", () => {
  assert.equal(torch.pendingCheckpoints(), 0);
  // Models built above hold parameters until collected; count only what a fresh step leaves.
  const before = torch.memory().tensors;
  const model = new Stack(4, 2);
  model.gradientCheckpointing = true;
  const withModel = torch.memory().tensors;
  const x = torch.randn([2, 3, 3], f64);
  torch.scope(() => model.loss(x).backward());
  model.zeroGrad();
  x.dispose();
  assert.equal(torch.memory().tensors, withModel);
  assert.ok(withModel > before && liveAtStart >= 0);
});
