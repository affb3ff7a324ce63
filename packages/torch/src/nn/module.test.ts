// nn.Module: HF-style dotted names, tied weights, buffers, train/eval, freezing, state dicts
// (round trip, strict errors, safetensors), and dtype conversion.
// Parameters and buffers outlive torch.scope, so every module a test builds is disposed when the
// test ends, and the last test checks that nothing leaked.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, nn, io, type Tensor } from "../index.js";

const liveAtStart = torch.memory().tensors;
const made: nn.Module[] = [];
/** Registers a module to be disposed (parameters and buffers) when the current test ends. */
function own<M extends nn.Module>(m: M): M { made.push(m); return m; }
function disposeModule(m: nn.Module): void {
  for (const [, p] of m.namedParameters()) p.dispose();
  for (const [, b] of m.namedBuffers()) b.dispose();
}
/** A test whose temporaries are freed by a scope and whose modules are disposed at the end. */
const test = (name: string, body: () => void): void => {
  it(name, () => {
    try { torch.scope(body); } finally { for (const m of made.splice(0)) disposeModule(m); }
  });
};

const dir = mkdtempSync(join(tmpdir(), "mindseye-nn-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const values = (t: Tensor): number[] => Array.from(t.toFloat64Values());

// A miniature of Hugging Face's Qwen2ForCausalLM layout (hidden 4, vocab 10, 2 layers).
class Attention extends nn.Module {
  q_proj = new nn.Linear(4, 4);
  k_proj = new nn.Linear(4, 2, { bias: false });
}
class DecoderLayer extends nn.Module {
  self_attn = new Attention();
  input_layernorm = new nn.RMSNorm(4);
}
class Backbone extends nn.Module {
  embed_tokens = new nn.Embedding(10, 4);
  layers = new nn.ModuleList([new DecoderLayer(), new DecoderLayer()]);
  norm = new nn.RMSNorm(4);
}
class CausalLM extends nn.Module {
  model = new Backbone();
  lm_head = new nn.Linear(4, 10, { bias: false });
  constructor(o: { tie?: boolean } = {}) {
    super();
    if (o.tie) {
      this.lm_head.weight.dispose();
      this.lm_head.weight = this.model.embed_tokens.weight;
    }
  }
  /** int64 ids [B, T] -> logits [B, T, 10] */
  forward(ids: Tensor): Tensor {
    let h = this.model.embed_tokens.forward(ids);
    for (const layer of this.model.layers) h = layer.input_layernorm.forward(layer.self_attn.q_proj.forward(h));
    return this.lm_head.forward(this.model.norm.forward(h));
  }
}

const LM_NAMES = [
  "model.embed_tokens.weight",
  "model.layers.0.self_attn.q_proj.weight",
  "model.layers.0.self_attn.q_proj.bias",
  "model.layers.0.self_attn.k_proj.weight",
  "model.layers.0.input_layernorm.weight",
  "model.layers.1.self_attn.q_proj.weight",
  "model.layers.1.self_attn.q_proj.bias",
  "model.layers.1.self_attn.k_proj.weight",
  "model.layers.1.input_layernorm.weight",
  "model.norm.weight",
  "lm_head.weight",
];
// embed 40 + 2 × (q 16+4, k 8, norm 4) + norm 4 + lm_head 40
const LM_PARAMS = 40 + 2 * (20 + 8 + 4) + 4 + 40;

/** A module with a persistent and a non-persistent buffer beside a parameter. */
class WithBuffers extends nn.Module {
  proj = new nn.Linear(2, 2);
  position_ids = new nn.Buffer(torch.arange(3));
  inv_freq = new nn.Buffer(torch.tensor([1, 0.5]), false);
}

describe("names", () => {
  test("namedParameters gives dotted HF names in definition order, through ModuleList", () => {
    const m = own(new CausalLM());
    assert.deepEqual(m.namedParameters().map(([n]) => n), LM_NAMES);
    assert.deepEqual([...m.stateDict().keys()], LM_NAMES);
    assert.equal(m.parameters().length, LM_NAMES.length);
    assert.equal(m.model.layers.at(1), m.namedModules().find(([n]) => n === "model.layers.1")![1]);
    assert.deepEqual(m.model.layers.namedChildren().map(([n]) => n), ["0", "1"]);
  });

  test("namedParameters({recurse: false}) lists only the module's own parameters", () => {
    const lin = own(new nn.Linear(3, 2));
    assert.deepEqual(lin.namedParameters({ recurse: false }).map(([n]) => n), ["weight", "bias"]);
    const m = own(new CausalLM());
    assert.deepEqual(m.namedParameters({ recurse: false }), []);
  });

  test("namedModules lists every module with its prefix, root first", () => {
    const m = own(new CausalLM());
    assert.deepEqual(m.namedModules().map(([n]) => n), [
      "", "model", "model.embed_tokens", "model.layers",
      "model.layers.0", "model.layers.0.self_attn", "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.input_layernorm",
      "model.layers.1", "model.layers.1.self_attn", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.1.input_layernorm",
      "model.norm", "lm_head",
    ]);
  });

  test("ModuleList: length, at (negative too), push, iteration, out-of-range error", () => {
    const list = own(new nn.ModuleList([new nn.Linear(1, 1), new nn.Linear(1, 2)]));
    assert.equal(list.length, 2);
    assert.equal(list.at(-1).outFeatures, 2);
    list.push(new nn.Linear(1, 3));
    assert.deepEqual([...list].map((l) => l.outFeatures), [1, 2, 3]);
    assert.deepEqual(list.namedParameters().map(([n]) => n), ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]);
    assert.throws(() => list.at(3), /ModuleList index 3 out of range \(length 3\)/);
  });

  test("tied weights: listed once by namedParameters, under both names in stateDict", () => {
    const m = own(new CausalLM({ tie: true }));
    assert.equal(m.lm_head.weight, m.model.embed_tokens.weight);
    const names = m.namedParameters().map(([n]) => n);
    assert.deepEqual(names, LM_NAMES.slice(0, -1), "lm_head.weight is the embedding, already listed");
    const sd = m.stateDict();
    assert.deepEqual([...sd.keys()], LM_NAMES);
    assert.equal(sd.get("lm_head.weight"), sd.get("model.embed_tokens.weight"));
    assert.equal(m.numParameters(), LM_PARAMS - 40, "the shared matrix counts once");
  });

  test("numParameters counts elements, trainable only when asked", () => {
    const m = own(new CausalLM());
    assert.equal(m.numParameters(), LM_PARAMS);
    m.model.requiresGrad_(false);
    assert.equal(m.numParameters(), LM_PARAMS);
    assert.equal(m.numParameters({ trainableOnly: true }), 40, "only lm_head stays trainable");
  });
});

describe("buffers", () => {
  test("persistent buffers are in the state dict, non-persistent ones are not; namedBuffers lists both", () => {
    const m = own(new WithBuffers());
    assert.deepEqual(m.namedBuffers().map(([n]) => n), ["position_ids", "inv_freq"]);
    // as PyTorch's state_dict: a module's own parameters and buffers, then its submodules'
    assert.deepEqual([...m.stateDict().keys()], ["position_ids", "proj.weight", "proj.bias"]);
    assert.deepEqual(m.namedParameters().map(([n]) => n), ["proj.weight", "proj.bias"], "buffers are not parameters");
    assert.equal(m.numParameters(), 6);
    assert.equal(m.position_ids.requiresGrad, false);
  });

  test("buffers outlive the scope that created their data", () => {
    const m = own(torch.scope(() => new WithBuffers()));
    assert.deepEqual(values(m.position_ids), [0, 1, 2]);
    assert.deepEqual(values(m.inv_freq), [1, 0.5]);
    assert.equal(m.proj.weight.disposed, false);
  });
});

describe("modes and gradients", () => {
  class Net extends nn.Module {
    fc = new nn.Linear(8, 8);
    drop = new nn.Dropout(0.5);
    inner = new nn.ModuleList([new nn.Dropout(0.5)]);
    forward(x: Tensor): Tensor { return this.inner.at(0).forward(this.drop.forward(this.fc.forward(x))); }
  }

  test("train()/eval() reach every submodule; dropout is the identity in eval", () => {
    const net = own(new Net());
    assert.ok(net.namedModules().every(([, m]) => m.training), "modules start in training mode");
    assert.equal(net.eval(), net, "eval returns the module");
    assert.deepEqual(net.namedModules().map(([n, m]) => [n, m.training]), [["", false], ["fc", false], ["drop", false], ["inner", false], ["inner.0", false]]);
    const x = torch.randn([16, 8], { generator: new torch.Generator(0) });
    assert.deepEqual(values(net.drop.forward(x)), values(x));
    assert.deepEqual(values(net.forward(x)), values(net.fc.forward(x)));
    net.train();
    assert.ok(net.namedModules().every(([, m]) => m.training));
    const y = values(net.drop.forward(x)), xs = values(x);
    const zeros = y.filter((v) => v === 0).length;
    assert.ok(zeros > 0 && zeros < y.length, `dropout(0.5) in training zeroes some of ${y.length} elements, zeroed ${zeros}`);
    y.forEach((v, i) => assert.ok(v === 0 || Math.abs(v - 2 * xs[i]!) < 1e-6, `kept elements are scaled by 2: ${v} vs ${xs[i]}`));
    net.train(false);
    assert.equal(net.inner.at(0).training, false, "train(false) is eval");
  });

  test("requiresGrad_(false) freezes every parameter; a frozen model records no graph", () => {
    const m = own(new CausalLM());
    assert.ok(m.parameters().every((p) => p.requiresGrad));
    m.requiresGrad_(false);
    assert.ok(m.parameters().every((p) => !p.requiresGrad));
    const out = m.forward(torch.tensor([[1, 2, 3]], { dtype: "int64" }));
    assert.equal(out.requiresGrad, false);
    m.model.layers.at(0).requiresGrad_();
    assert.deepEqual(m.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n), LM_NAMES.slice(1, 5));
  });

  test("backward fills .grad of every used parameter; zeroGrad sets them all to none", () => {
    const m = own(new CausalLM());
    m.forward(torch.tensor([[1, 2, 3]], { dtype: "int64" })).square().sum().backward();
    const withGrad = m.namedParameters().filter(([, p]) => p.grad !== null).map(([n]) => n);
    // k_proj is not used by forward
    assert.deepEqual(withGrad, LM_NAMES.filter((n) => !n.includes("k_proj")));
    m.zeroGrad();
    assert.deepEqual(m.namedParameters().filter(([, p]) => p.grad !== null).map(([n]) => n), []);
  });
});

describe("loadStateDict", () => {
  test("round trip copies values in place into the same Parameter objects", () => {
    torch.manualSeed(1);
    const a = own(new CausalLM());
    torch.manualSeed(2);
    const b = own(new CausalLM());
    const before = b.parameters();
    assert.notDeepEqual(values(a.lm_head.weight), values(b.lm_head.weight));
    const r = b.loadStateDict(a.stateDict());
    assert.deepEqual(r, { missing: [], unexpected: [] });
    const after = b.parameters();
    after.forEach((p, i) => assert.equal(p, before[i], "optimizers keep their references"));
    for (const [name, t] of a.stateDict()) assert.deepEqual(values(b.stateDict().get(name)!), values(t), name);
    // a copy, not shared storage
    torch.noGrad(() => a.lm_head.weight.fill_(7));
    assert.notDeepEqual(values(b.lm_head.weight), values(a.lm_head.weight));
    assert.ok(b.lm_head.weight.requiresGrad && b.lm_head.weight.isLeaf, "still a trainable leaf");
  });

  test("accepts a plain object and converts dtype", () => {
    const lin = own(new nn.Linear(2, 1));
    lin.loadStateDict({ weight: torch.tensor([[1.5, -2]], { dtype: "float64" }), bias: torch.tensor([0.25], { dtype: "float64" }) });
    assert.equal(lin.weight.dtype, "float32");
    assert.deepEqual(values(lin.weight), [1.5, -2]);
    assert.deepEqual(values(lin.bias!), [0.25]);
  });

  test("missing, unexpected and mis-shaped keys are all listed in one StateDictError, and nothing is copied", () => {
    const m = own(new CausalLM());
    const snapshot = m.parameters().map(values);
    const sd = new Map(m.stateDict());
    sd.delete("model.norm.weight");
    sd.set("model.layers.0.self_attn.v_proj.weight", torch.zeros([4, 4]));
    sd.set("model.layers.1.self_attn.k_proj.weight", torch.zeros([3, 4]));
    sd.set("model.embed_tokens.weight", torch.zeros([10, 4]));
    assert.throws(() => m.loadStateDict(sd), (e: Error) => {
      assert.ok(e instanceof nn.StateDictError, `expected StateDictError, got ${e.name}`);
      assert.deepEqual(e.missing, ["model.norm.weight"]);
      assert.deepEqual(e.unexpected, ["model.layers.0.self_attn.v_proj.weight"]);
      assert.deepEqual(e.mismatched, [{ key: "model.layers.1.self_attn.k_proj.weight", expected: [2, 4], got: [3, 4] }]);
      for (const frag of ["CausalLM", "missing keys (1): model.norm.weight", "unexpected keys (1): model.layers.0.self_attn.v_proj.weight",
        "shape mismatch for model.layers.1.self_attn.k_proj.weight: model has [2, 4], checkpoint has [3, 4]"]) {
        assert.ok(e.message.includes(frag), `message should contain ${JSON.stringify(frag)}:\n${e.message}`);
      }
      return true;
    });
    assert.deepEqual(m.parameters().map(values), snapshot, "a failed load leaves the model untouched (embed_tokens was not zeroed)");
  });

  test("each problem alone raises a StateDictError", () => {
    const lin = own(new nn.Linear(2, 3));
    const w = lin.weight, b = lin.bias!;
    assert.throws(() => lin.loadStateDict({ weight: w }), (e: Error) => e instanceof nn.StateDictError && /missing keys \(1\): bias/.test(e.message));
    assert.throws(() => lin.loadStateDict({ weight: w, bias: b, extra: b }), (e: Error) => e instanceof nn.StateDictError && /unexpected keys \(1\): extra/.test(e.message));
    assert.throws(() => lin.loadStateDict({ weight: torch.zeros([2, 3]), bias: b }),
      (e: Error) => e instanceof nn.StateDictError && e.message.includes("shape mismatch for weight: model has [3, 2], checkpoint has [2, 3]"));
    assert.throws(() => lin.loadStateDict({ weight: w, bias: torch.zeros([3, 1]) }),
      (e: Error) => e instanceof nn.StateDictError && e.message.includes("model has [3], checkpoint has [3, 1]"), "a rank mismatch is a shape mismatch");
  });

  test("strict: false tolerates missing and unexpected keys, loads the rest, never tolerates shape mismatches", () => {
    const lin = own(new nn.Linear(2, 1));
    const oldBias = values(lin.bias!);
    const r = lin.loadStateDict({ weight: torch.tensor([[3, 4]]), "other.weight": torch.zeros([1]) }, { strict: false });
    assert.deepEqual(r, { missing: ["bias"], unexpected: ["other.weight"] });
    assert.deepEqual(values(lin.weight), [3, 4]);
    assert.deepEqual(values(lin.bias!), oldBias);
    assert.throws(() => lin.loadStateDict({ weight: torch.zeros([2, 2]) }, { strict: false }), (e: Error) => {
      assert.ok(e instanceof nn.StateDictError);
      assert.deepEqual(e.mismatched, [{ key: "weight", expected: [1, 2], got: [2, 2] }]);
      assert.match(e.message, /strict=false tolerates missing and unexpected keys, never shape mismatches/);
      return true;
    });
    assert.deepEqual(values(lin.weight), [3, 4]);
  });

  test("stateDict → io.saveFile → io.loadFile → loadStateDict is the identity (tied weights and buffers too)", () => {
    torch.manualSeed(3);
    const a = own(new CausalLM({ tie: true }));
    const path = join(dir, "lm.safetensors");
    io.saveFile(path, a.stateDict(), { format: "pt" });
    const loaded = io.loadFile(path);
    assert.deepEqual([...loaded.keys()].sort(), [...LM_NAMES].sort());
    torch.manualSeed(4);
    const b = own(new CausalLM({ tie: true }));
    b.loadStateDict(loaded);
    for (const [name, t] of a.stateDict()) assert.deepEqual(b.stateDict().get(name)!.toBytes(), t.toBytes(), name);
    assert.equal(b.lm_head.weight, b.model.embed_tokens.weight, "still tied");

    const wb = own(new WithBuffers());
    torch.noGrad(() => wb.position_ids.fill_(5));
    io.saveFile(join(dir, "wb.safetensors"), wb.stateDict());
    const wb2 = own(new WithBuffers());
    wb2.loadStateDict(io.loadFile(join(dir, "wb.safetensors")));
    assert.deepEqual(values(wb2.position_ids), [5, 5, 5]);
    assert.equal(wb2.position_ids.dtype, "int64");
    assert.deepEqual(values(wb2.proj.weight), values(wb.proj.weight));
  });
});

describe("to", () => {
  test("to({dtype: float64}) converts floating parameters and buffers in place, keeps requiresGrad, and the module runs", () => {
    const m = own(new WithBuffers());
    m.proj.bias!.requiresGrad_(false);
    const w = m.proj.weight, before = values(w);
    assert.equal(m.to({ dtype: "float64" }), m);
    assert.equal(m.proj.weight, w, "the same Parameter object (optimizer references stay valid)");
    assert.ok(m.proj.weight instanceof nn.Parameter);
    assert.equal(m.proj.weight.dtype, "float64");
    assert.equal(m.proj.bias!.dtype, "float64");
    assert.equal(m.inv_freq.dtype, "float64", "floating buffers convert");
    assert.equal(m.position_ids.dtype, "int64", "integer buffers keep their dtype");
    assert.deepEqual(values(m.proj.weight), before, "float32 → float64 is exact");
    assert.equal(m.proj.weight.requiresGrad, true);
    assert.equal(m.proj.bias!.requiresGrad, false, "a frozen parameter stays frozen");
    assert.ok(m.proj.weight.isLeaf);
    const y = m.proj.forward(torch.ones([3, 2], { dtype: "float64" }));
    assert.equal(y.dtype, "float64");
    y.sum().backward();
    assert.equal(m.proj.weight.grad!.dtype, "float64");
    assert.deepEqual(values(m.proj.weight.grad!), [3, 3, 3, 3]);
  });

  test("to converts a tied weight once and keeps it tied", () => {
    const m = own(new CausalLM({ tie: true }));
    m.to({ dtype: "float64" });
    assert.equal(m.lm_head.weight, m.model.embed_tokens.weight);
    assert.ok(m.parameters().every((p) => p.dtype === "float64" && p.requiresGrad));
    const out = m.forward(torch.tensor([[0, 9]], { dtype: "int64" }));
    assert.deepEqual(out.shape, [1, 2, 10]);
    assert.equal(out.dtype, "float64");
  });
});

describe("Parameter", () => {
  test("a Parameter aliases its data, requires grad by default, and outlives the scope", () => {
    const p = torch.scope(() => new nn.Parameter(torch.tensor([1, 2])));
    try {
      assert.equal(p.disposed, false);
      assert.equal(p.requiresGrad, true);
      assert.ok(p.isLeaf);
      assert.deepEqual(values(p), [1, 2]);
      const q = torch.scope(() => new nn.Parameter(torch.tensor([1]), false));
      assert.equal(q.requiresGrad, false);
      q.dispose();
    } finally {
      p.dispose();
    }
  });
});

describe("leaks", () => {
  it("every test above freed its tensors", () => {
    assert.equal(torch.memory().tensors, liveAtStart);
  });
});
