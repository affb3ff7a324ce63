// Golden test, after llm.c's test_gpt2: ReferenceDecoder must reproduce PyTorch's logits, loss,
// every parameter gradient, 10 AdamW losses and the weights after them, from the same initial
// weights and batch. The fixture is written by fixtures/make_golden.py (torch 1.13, float32);
// regenerate it with `/usr/bin/python3 fixtures/make_golden.py`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { torch, optim, io, type Tensor } from "../index.js";
import { ReferenceDecoder, type DecoderConfig } from "./decoder.js";

// dist/testing/golden.test.js -> <repo>/fixtures/
const FIXTURE = fileURLToPath(new URL("../../../../fixtures/golden_decoder.safetensors", import.meta.url));

// |got - want| <= RTOL · max(|want|, FLOOR), FLOOR = 1e-2 · max|want| over the tensor. The floor
// scales with the tensor: an element near zero that results from cancellation carries the
// rounding error of the terms that cancelled, which is relative to the tensor's magnitude, not to
// its own (measured: with an absolute floor of 1e-6, gradient elements of ~1e-6 differ by up to
// 1.5e-3 relative; with 1e-3 · max, by 1.2e-4). The loss curve is compared without a floor.
const RTOL = 1e-4;
const FLOOR_FRACTION = 1e-2;

const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/make_golden.py";
const fixture = io.loadFile(FIXTURE);
const meta = io.loadMetadata(FIXTURE) ?? {};
/** A JSON value from the fixture's version header (`__metadata__`). */
function header<T>(key: string): T {
  const v = meta[key];
  if (v === undefined) assert.fail(`${FIXTURE}: __metadata__ has no "${key}"; ${REGENERATE}`);
  return JSON.parse(v) as T;
}
const cfg = header<DecoderConfig>("config");
const adamw = header<{ lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number }>("adamw");

function get(name: string): Tensor {
  const t = fixture.get(name);
  if (t === undefined) assert.fail(`${FIXTURE} has no tensor "${name}"; ${REGENERATE}`);
  return t;
}

/** The fixture's tensors under `prefix`, with the prefix removed. */
function withPrefix(prefix: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of fixture) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), t);
  return out;
}

/** A decoder holding the fixture's initial weights. */
function initialModel(): ReferenceDecoder {
  const model = new ReferenceDecoder(cfg);
  model.loadStateDict(withPrefix("init."));
  return model;
}

/** Asserts got ≈ want elementwise; returns the worst relative error (against the floored scale). */
function assertClose(name: string, got: Tensor, want: Tensor, floorFraction = FLOOR_FRACTION): number {
  assert.deepEqual(got.shape, want.shape, `${name}: shape [${got.shape}] but PyTorch has [${want.shape}]`);
  const a = got.toFloat64Values(), b = want.toFloat64Values();
  const floor = floorFraction * b.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  let worst = 0, at = 0;
  for (let i = 0; i < b.length; i++) {
    const err = Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(b[i]!), floor);
    if (!(err <= worst)) { worst = err; at = i; } // NaN lands here too
  }
  if (!(worst <= RTOL)) {
    assert.fail(`${name}: element ${unravel(at, want.shape)} is ${a[at]} but PyTorch has ${b[at]} ` +
      `(relative error ${worst.toExponential(2)} > ${RTOL}, floor ${floor.toExponential(2)})`);
  }
  return worst;
}

function unravel(i: number, shape: number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) { idx.unshift(i % shape[d]!); i = Math.floor(i / shape[d]!); }
  return `[${idx.join(", ")}]`;
}

test("golden: logits and loss match PyTorch", (t) => {
  const model = initialModel();
  torch.scope(() => {
    const logits = model.forward(get("tokens")); // [B, T, V]
    const loss = model.loss(get("tokens"), get("targets"));
    const eLogits = assertClose("logits", logits, get("logits"));
    const eLoss = assertClose("loss", loss, get("loss"));
    t.diagnostic(`max relative error: logits ${eLogits.toExponential(2)}, loss ${eLoss.toExponential(2)}`);
  });
});

test("golden: every parameter gradient matches PyTorch", (t) => {
  const model = initialModel();
  torch.scope(() => model.loss(get("tokens"), get("targets")).backward());
  const want = withPrefix("grad.");
  const names = model.namedParameters().map(([n]) => n);
  assert.deepEqual([...names].sort(), [...want.keys()].sort(), "parameter names differ from PyTorch's named_parameters()");
  let worst = 0, worstName = "";
  torch.scope(() => {
    for (const [name, p] of model.namedParameters()) {
      const g = p.grad;
      if (g === null) assert.fail(`${name}: no gradient after backward()`);
      const e = assertClose(`grad of ${name}`, g, want.get(name)!);
      if (e >= worst) { worst = e; worstName = name; }
    }
  });
  t.diagnostic(`max relative error over ${names.length} gradients: ${worst.toExponential(2)} (${worstName})`);
});

test("golden: 10 AdamW steps match PyTorch (losses and final weights)", (t) => {
  const model = initialModel();
  const opt = new optim.AdamW(model.parameters(), {
    lr: adamw.lr, betas: adamw.betas, eps: adamw.eps, weightDecay: adamw.weight_decay,
  });
  const tokens = get("tokens"), targets = get("targets");
  const losses: number[] = [];
  for (let step = 0; step < adamw.steps; step++) {
    // 1. zero grads -> 2. loss (recorded before the update) -> 3. backward -> 4. step
    opt.zeroGrad();
    losses.push(torch.scope(() => {
      const loss = model.loss(tokens, targets);
      loss.backward();
      return loss.item();
    }));
    opt.step();
  }
  const eLosses = torch.scope(() => assertClose("AdamW losses", torch.tensor(losses, { dtype: "float64" }), get("adamw.losses"), 0));

  const want = withPrefix("final.");
  const state = model.stateDict();
  assert.deepEqual([...state.keys()].sort(), [...want.keys()].sort(), "state dict names differ from PyTorch's state_dict()");
  let worst = 0, worstName = "";
  torch.scope(() => {
    for (const [name, p] of state) {
      const isQkvBias = name.endsWith(".attn.qkv.bias"); // its key slice is noise-driven: see below
      const e = isQkvBias
        ? assertClose(`final ${name} (query and value slices)`, dropKeySlice(p), dropKeySlice(want.get(name)!))
        : assertClose(`final ${name}`, p, want.get(name)!);
      if (e >= worst) { worst = e; worstName = name; }
    }
  });
  t.diagnostic(`max relative error: losses ${eLosses.toExponential(2)}, final weights ${worst.toExponential(2)} (${worstName})`);
});

// The key slice of qkv.bias, b_k, has zero gradient in exact arithmetic: q·b_k adds the same score
// to every key of a query's row, and softmax ignores a constant shift. Its computed gradient is
// rounding noise (~1e-9), which AdamW normalises into ±lr steps of arbitrary sign, so no other
// summation order reproduces PyTorch's final b_k. The final-weight check leaves b_k out; this test
// keeps that exclusion honest by checking the premise, in the fixture and in the engine.
test("golden: the attention key bias has (numerically) zero gradient, as the AdamW check assumes", () => {
  const model = initialModel();
  torch.scope(() => {
    model.loss(get("tokens"), get("targets")).backward();
    for (const [name, p] of model.namedParameters()) {
      if (!name.endsWith(".attn.qkv.bias")) continue;
      for (const [who, g] of [["PyTorch", get(`grad.${name}`)], ["engine", p.grad!]] as const) {
        const D = cfg.width;
        const keyMax = g.slice(0, D, 2 * D).abs().amax().item();
        const allMax = g.abs().amax().item();
        assert.ok(keyMax <= 1e-6 * allMax, `${who} gradient of ${name}[${D}:${2 * D}] (key bias) reaches ${keyMax}, not ~0 next to ${allMax}`);
      }
    }
  });
});

/** qkv bias [3D] without its key slice -> [2D] (query, value). */
function dropKeySlice(bias: Tensor): Tensor {
  const D = cfg.width;
  return torch.cat([bias.slice(0, 0, D), bias.slice(0, 2 * D)]);
}
