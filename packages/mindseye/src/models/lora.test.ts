// LoRA: the merge is W + (α/r)·B·A, the adapted forward equals the merged one, PEFT's layout
// round-trips, only adapter weights train, and a tiny fine-tune learns.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, nn, F, io, optim, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { qwen2Preset } from "./qwen2.js";
import { wellConditionedQwen2 } from "./test_helpers.js";
import { applyLora, loadLoraAdapter, resolveLora, matchesTarget, LoraLinear, TrainableTokensEmbedding, type LoraAdapter } from "./lora.js";

const tiny = () => wellConditionedQwen2(qwen2Preset("tiny"), 0);
const ids = () => torch.randint(0, 99, [2, 6], { generator: new torch.Generator(1) });

/** Gives every B a random value, as after training (B = 0 at init makes the update vanish). */
function randomiseB(lora: LoraAdapter, seed: number): void {
  const g = new torch.Generator(seed);
  for (const m of lora.modules.values()) nn.init.normal_(m.lora_B.weight, 0, 0.1, g);
}

const maxDiff = (a: Tensor, b: Tensor) => torch.scope(() => a.sub(b).abs().max().item());

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "mindseye-lora-"));
}

test("target rule: PEFT's list (exact or '.'-suffix) and regex (full match) forms", () => {
  assert.equal(matchesTarget("model.layers.0.self_attn.q_proj", ["q_proj"]), true);
  assert.equal(matchesTarget("q_proj", ["q_proj"]), true);
  assert.equal(matchesTarget("model.layers.0.self_attn.xq_proj", ["q_proj"]), false);
  assert.equal(matchesTarget("model.layers.0.self_attn.q_proj", "q_proj"), false, "a regex must match the whole name");
  assert.equal(matchesTarget("model.layers.1.self_attn.q_proj", String.raw`.*layers\.1\..*q_proj`), true);
  assert.equal(matchesTarget("model.layers.0.self_attn.q_proj", String.raw`.*layers\.1\..*q_proj`), false);
});

test("applyLora: wraps the targets (A kaiming-uniform [r, in], B zeros [out, r]), freezes the rest, keeps HF names", () => {
  const model = tiny();
  const before = torch.scope(() => model.forward({ inputIds: ids() }).logits);
  const lora = applyLora(model, resolveLora({ r: 4, loraAlpha: 8 }), { generator: new torch.Generator(2) });
  // 2 layers × 7 projections
  assert.equal(lora.modules.size, 14);
  const q = lora.modules.get("model.layers.0.self_attn.q_proj")!;
  assert.deepEqual(q.lora_A.weight.shape, [4, 32]);
  assert.deepEqual(q.lora_B.weight.shape, [32, 4]);
  assert.equal(q.scaling, 2);
  const bound = 1 / Math.sqrt(32); // kaiming_uniform_(a=√5): gain √(2/6) · √(3/fan_in)
  const a = q.lora_A.weight.toFloat32Array();
  assert.ok(a.every((v) => Math.abs(v) <= bound) && a.some((v) => Math.abs(v) > bound / 2));
  assert.ok(q.lora_B.weight.toFloat32Array().every((v) => v === 0));
  const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n);
  assert.deepEqual(trainable.sort(), lora.namedParameters().map(([n]) => n).sort());
  const names = [...model.stateDict().keys()];
  assert.ok(names.includes("model.layers.0.self_attn.q_proj.weight") && names.includes("model.layers.0.self_attn.q_proj.bias"));
  assert.ok(names.includes("model.layers.0.self_attn.q_proj.lora_A.weight"));
  // B = 0: the adapted model computes the base model.
  const after = torch.scope(() => model.forward({ inputIds: ids() }).logits);
  assert.equal(maxDiff(before, after), 0);
  assert.throws(() => applyLora(model, resolveLora({})), /already has a LoRA adapter/);
  assert.throws(() => applyLora(tiny(), resolveLora({ targetModules: ["qkv"] })), (e: Error) => e instanceof ConfigError && /matches no module.*q_proj/.test(e.message));
  assert.throws(() => applyLora(tiny(), resolveLora({ targetModules: ["mlp"] })), /a Qwen2MLP; LoRA wraps nn.Linear only/);
});

test("merge: W becomes W + (α/r)·B·A exactly, the merged forward equals the adapted one, the modules are plain nn.Linear again", (t) => {
  const model = tiny();
  const base = new Map([...model.stateDict()].map(([k, t]) => [k, t.clone()]));
  const lora = applyLora(model, resolveLora({ r: 4, loraAlpha: 16, targetModules: ["q_proj", "down_proj"] }), { generator: new torch.Generator(3) });
  randomiseB(lora, 4);
  const expected = new Map<string, Tensor>();
  for (const [name, m] of lora.modules) {
    expected.set(`${name}.weight`, base.get(`${name}.weight`)!.add(m.lora_B.weight.matmul(m.lora_A.weight).mul(4)));
  }
  const x = ids();
  const adapted = torch.scope(() => model.forward({ inputIds: x }).logits);
  assert.ok(maxDiff(adapted, torch.scope(() => { const m = tiny(); return m.forward({ inputIds: x }).logits; })) > 1e-3, "the adapter changes the output");
  assert.deepEqual(lora.merge().sort(), ["model.layers.0.mlp.down_proj", "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.layers.1.self_attn.q_proj"]);
  const merged = model.stateDict();
  let worst = 0;
  for (const [k, want] of expected) {
    const d = maxDiff(merged.get(k)!, want);
    worst = Math.max(worst, d);
    assert.ok(d <= 1e-6, `${k}: ${d}`);
  }
  assert.deepEqual([...merged.keys()].sort(), [...base.keys()].sort(), "merged model has the base model's names only");
  assert.ok(model.namedModules().every(([, m]) => !(m instanceof LoraLinear)));
  const d = maxDiff(torch.scope(() => model.forward({ inputIds: x }).logits), adapted);
  t.diagnostic(`merged weight vs W + (α/r)·B·A: ${worst}; merged vs adapted logits: ${d}`);
  assert.ok(d <= 1e-5, `merged vs adapted logits: ${d}`);
});

test("PEFT layout: adapter_config.json fields and adapter_model.safetensors names; a fresh base model loads it and computes the same", () => {
  const dir = tmp();
  try {
    const model = tiny();
    const lora = applyLora(model, resolveLora({ r: 2, loraAlpha: 4, loraDropout: 0.05, baseModelNameOrPath: "Qwen/Qwen2.5-0.5B" }), { generator: new torch.Generator(5) });
    randomiseB(lora, 6);
    lora.save(dir);
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.r, 2);
    assert.equal(cfg.lora_alpha, 4);
    assert.equal(cfg.lora_dropout, 0.05);
    assert.equal(cfg.bias, "none");
    assert.equal(cfg.task_type, "CAUSAL_LM");
    assert.equal(cfg.base_model_name_or_path, "Qwen/Qwen2.5-0.5B");
    assert.deepEqual(cfg.target_modules, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
    const names = [...io.readHeader(join(dir, "adapter_model.safetensors")).tensors.keys()].sort();
    assert.equal(names.length, 28);
    assert.ok(names.includes("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert.ok(names.includes("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    assert.ok(names.every((n) => /^base_model\.model\.model\.layers\.\d\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/.test(n)));

    const fresh = tiny();
    const loaded = loadLoraAdapter(fresh, dir);
    assert.equal(loaded.config.scaling, 2);
    model.eval();
    fresh.eval();
    const x = ids();
    assert.equal(maxDiff(torch.scope(() => model.forward({ inputIds: x }).logits), torch.scope(() => fresh.forward({ inputIds: x }).logits)), 0);

    // Options MindsEye does not implement are refused by name; a wrong rank by shape.
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...cfg, use_dora: true }));
    assert.throws(() => loadLoraAdapter(tiny(), dir), /"use_dora": is not supported/);
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...cfg, r: 3 }));
    assert.throws(() => loadLoraAdapter(tiny(), dir), /is \[2, 32\], the model needs \[3, 32\]/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("training: only the adapter weights get gradients and change; a tiny fine-tune lowers the loss", (t) => {
  const model = tiny().train();
  const frozen = new Map([...model.namedParameters()].map(([k, p]) => [k, p.clone()]));
  const lora = applyLora(model, resolveLora({ r: 4, loraAlpha: 8 }), { generator: new torch.Generator(7) });
  const opt = new optim.AdamW(lora.parameters(), { lr: 1e-2, weightDecay: 0 });
  const x = torch.randint(0, 99, [4, 12], { generator: new torch.Generator(8) });
  const lossOf = () => {
    const { logits } = model.forward({ inputIds: x });
    return F.crossEntropy(logits.slice(1, 0, -1).reshape(-1, 99), x.slice(1, 1).reshape(-1));
  };
  const losses: number[] = [];
  for (let step = 0; step < 40; step++) {
    torch.scope(() => {
      const loss = lossOf();
      loss.backward();
      if (step === 0) {
        for (const [n, p] of model.namedParameters()) assert.equal(p.grad !== null, n.includes(".lora_"), `${n}: gradient only on adapter weights`);
      }
      opt.step();
      opt.zeroGrad();
      losses.push(loss.item());
    });
  }
  for (const [n, p] of model.namedParameters()) {
    if (n.includes(".lora_")) continue;
    assert.equal(maxDiff(p, frozen.get(n)!), 0, `${n} is frozen`);
  }
  for (const [n, p] of lora.namedParameters()) assert.ok(p.toFloat32Array().some((v) => v !== 0), `${n} trained`);
  t.diagnostic(`loss ${losses[0]!.toFixed(3)} -> ${losses.at(-1)!.toFixed(3)} in 40 steps`);
  assert.ok(losses.at(-1)! < 0.5 * losses[0]!, `loss ${losses[0]!.toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}`);
});

test("modulesToSave and trainableTokenIndices: the saved module and the chosen rows train, all else stays bit-identical; PEFT's names; save -> load -> merge / unload", (t) => {
  const dir = tmp();
  try {
    const model = tiny().train();
    const base = new Map([...model.stateDict()].map(([k, v]) => [k, v.clone()]));
    const rows = [5, 7];
    const cfg = resolveLora({ r: 4, loraAlpha: 8, targetModules: ["q_proj", "gate_proj"], modulesToSave: ["layers.1.mlp"], trainableTokenIndices: { embed_tokens: rows } });
    const lora = applyLora(model, cfg, { generator: new torch.Generator(11) });
    // q_proj in both layers; gate_proj only in layer 0 (layer 1's mlp trains whole)
    assert.deepEqual([...lora.modules.keys()].sort(), ["model.layers.0.mlp.gate_proj", "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]);
    const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n).sort();
    assert.deepEqual(trainable, lora.namedParameters().map(([n]) => n).sort());
    assert.ok(trainable.includes("model.layers.1.mlp.down_proj.weight") && trainable.includes("model.embed_tokens.token_adapter.trainable_tokens_delta"));
    assert.ok(model.namedModules().some(([n, m]) => n === "model.embed_tokens" && m instanceof TrainableTokensEmbedding));
    const x = torch.randint(0, 99, [4, 12], { generator: new torch.Generator(12) });
    x.indexPut_([null, torch.tensor([0, 3], { dtype: "int64" })], torch.tensor([5, 7], { dtype: "int64" })); // the chosen tokens are read
    const logits = () => model.forward({ inputIds: x }).logits;
    assert.equal(maxDiff(torch.scope(logits), torch.scope(() => tiny().forward({ inputIds: x }).logits)), 0, "at init the model computes the base model");
    const opt = new optim.AdamW(lora.parameters(), { lr: 1e-2, weightDecay: 0 });
    const losses: number[] = [];
    for (let step = 0; step < 20; step++) {
      torch.scope(() => {
        const loss = F.crossEntropy(logits().slice(1, 0, -1).reshape(-1, 99), x.slice(1, 1).reshape(-1));
        loss.backward();
        opt.step();
        opt.zeroGrad();
        losses.push(loss.item());
      });
    }
    t.diagnostic(`loss ${losses[0]!.toFixed(3)} -> ${losses.at(-1)!.toFixed(3)} in 20 steps`);
    assert.ok(losses.at(-1)! < 0.7 * losses[0]!);
    for (const [n, p] of model.namedParameters()) if (!p.requiresGrad) assert.equal(maxDiff(p, base.get(n)!), 0, `${n} is frozen`);
    const delta = lora.tokens.get("model.embed_tokens")!.token_adapter.trainable_tokens_delta;
    const idx = torch.tensor(rows, { dtype: "int64" });
    assert.ok(maxDiff(delta, base.get("model.embed_tokens.weight")!.indexSelect(0, idx)) > 1e-3, "the chosen rows trained");
    assert.ok(maxDiff(model.stateDict().get("model.layers.1.mlp.up_proj.weight")!, base.get("model.layers.1.mlp.up_proj.weight")!) > 1e-3, "the saved module trained");

    lora.save(dir);
    const json = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    assert.deepEqual(json.modules_to_save, ["layers.1.mlp"]);
    assert.deepEqual(json.trainable_token_indices, { embed_tokens: rows });
    const names = [...io.readHeader(join(dir, "adapter_model.safetensors")).tensors.keys()];
    assert.deepEqual(names.filter((n) => !n.includes(".lora_")).sort(), [
      "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
      "base_model.model.model.layers.1.mlp.down_proj.weight", "base_model.model.model.layers.1.mlp.gate_proj.weight", "base_model.model.model.layers.1.mlp.up_proj.weight",
    ]);
    model.eval();
    const adapted = torch.scope(logits);
    const fresh = tiny().eval();
    loadLoraAdapter(fresh, dir);
    assert.equal(maxDiff(torch.scope(() => fresh.forward({ inputIds: x }).logits), adapted), 0, "a fresh base model with the adapter computes the same");

    // merge: the rows are written into the embedding, the saved module keeps its training
    const trainedRows = delta.clone();
    lora.merge();
    assert.ok(model.namedModules().every(([, m]) => !(m instanceof LoraLinear || m instanceof TrainableTokensEmbedding)));
    const merged = model.stateDict();
    assert.deepEqual([...merged.keys()].sort(), [...base.keys()].sort());
    assert.equal(maxDiff(merged.get("model.embed_tokens.weight")!.indexSelect(0, idx), trainedRows), 0);
    const others = torch.tensor([...Array(99).keys()].filter((i) => !rows.includes(i)), { dtype: "int64" });
    assert.equal(maxDiff(merged.get("model.embed_tokens.weight")!.indexSelect(0, others), base.get("model.embed_tokens.weight")!.indexSelect(0, others)), 0);
    const d = maxDiff(torch.scope(logits), adapted);
    assert.ok(d <= 1e-5, `merged vs adapted logits: ${d}`);

    // unload (merge: false): base weights and rows back; the saved module stays trained, as PEFT's unload
    const reloaded = loadLoraAdapter(tiny(), dir);
    reloaded.unload();
    const unloaded = reloaded.model.stateDict();
    assert.equal(maxDiff(unloaded.get("model.embed_tokens.weight")!, base.get("model.embed_tokens.weight")!), 0);
    assert.equal(maxDiff(unloaded.get("model.layers.0.self_attn.q_proj.weight")!, base.get("model.layers.0.self_attn.q_proj.weight")!), 0);
    assert.equal(maxDiff(unloaded.get("model.layers.1.mlp.up_proj.weight")!, merged.get("model.layers.1.mlp.up_proj.weight")!), 0);

    assert.throws(() => applyLora(tiny(), resolveLora({ modulesToSave: ["nope"] })), /modulesToSave \["nope"\] matches no module/);
    assert.throws(() => applyLora(tiny(), resolveLora({ trainableTokenIndices: { embed_tokens: [99] } })), /token id 99 is outside the embedding's 99 rows/);
    assert.throws(() => applyLora(tiny(), resolveLora({ trainableTokenIndices: { q_proj: [1] } })), /must name one module/);
    assert.throws(() => resolveLora({ trainableTokenIndices: { embed_tokens: [] } }), /lora\.trainableTokenIndices/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("LoRA with gradient checkpointing: the same adapter gradients as without", () => {
  const model = tiny().train();
  const lora = applyLora(model, resolveLora({ r: 4, loraAlpha: 8 }), { generator: new torch.Generator(9) });
  randomiseB(lora, 10);
  const x = ids();
  const grads = () => torch.scope(() => {
    F.crossEntropy(model.forward({ inputIds: x }).logits.reshape(-1, 99), x.reshape(-1)).backward();
    const g = lora.parameters().flatMap((p) => [...p.grad!.toFloat32Array()]);
    model.zeroGrad();
    return g;
  });
  const plain = grads();
  torch.setGradientCheckpointing(model);
  const ckpt = grads();
  assert.ok(plain.every((v, i) => Math.abs(v - ckpt[i]!) <= 1e-6));
  assert.equal(torch.pendingCheckpoints(), 0);
});

test("resolveLora: errors name the field", () => {
  assert.throws(() => resolveLora({ r: 0 }), /lora\.r: must be a positive integer/);
  assert.throws(() => resolveLora({ targetModules: [] }), /lora\.targetModules: must be a non-empty list/);
  assert.throws(() => resolveLora({ targetModules: "(" }), /is not a regular expression/);
  assert.throws(() => resolveLora({ rank: 4 } as never), /lora\.rank: unknown LoRA field/);
});
