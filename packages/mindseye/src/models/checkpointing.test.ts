// Gradient checkpointing in the model families (torch.checkpoint per layer): the same loss and
// gradients as without it, and a lower peak memory in a real process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { torch, F, nn, type Tensor } from "@mindseye/torch";
import { VitVisionModel, vitPreset } from "./vit.js";
import { qwen2Preset } from "./qwen2.js";
import { Qwen2_5_VLForConditionalGeneration, qwen2_5_vlPreset, type GridThw } from "./qwen2_5_vl.js";
import { wellConditionedQwen2 } from "./test_helpers.js";

/** Loss and every parameter's gradient after one forward/backward in training mode. */
function gradients(model: nn.Module, loss: () => Tensor): { loss: number; grads: Map<string, Float32Array> } {
  return torch.scope(() => {
    model.zeroGrad();
    const l = loss();
    l.backward();
    const grads = new Map<string, Float32Array>();
    for (const [n, p] of model.namedParameters()) if (p.grad !== null) grads.set(n, p.grad.toFloat32Array());
    return { loss: l.item(), grads };
  });
}

/** Largest |a - b| over the loss and every gradient; both runs must have the same gradients. */
function largestDifference(a: ReturnType<typeof gradients>, b: ReturnType<typeof gradients>): number {
  assert.deepEqual([...a.grads.keys()], [...b.grads.keys()]);
  let m = Math.abs(a.loss - b.loss);
  for (const [k, ga] of a.grads) {
    const gb = b.grads.get(k)!;
    for (let i = 0; i < ga.length; i++) m = Math.max(m, Math.abs(ga[i]! - gb[i]!));
  }
  return m;
}

test("ViT: gradient checkpointing gives the same loss and gradients (forward and features), and leaves nothing pending", (t) => {
  const model = new VitVisionModel(vitPreset("clip-tiny"), { generator: new torch.Generator(0) }).train();
  const pixels = torch.randn([2, 3, 16, 16], { generator: new torch.Generator(1) });
  for (const run of [() => model.forward(pixels).pooled!.pow(2).mean(), () => model.features(pixels, -1, { dropClassToken: true }).pow(2).mean()]) {
    model.gradientCheckpointing = false;
    const plain = gradients(model, run);
    assert.equal(plain.grads.size > 0, true);
    model.gradientCheckpointing = true;
    const ckpt = gradients(model, run);
    const d = largestDifference(plain, ckpt);
    assert.ok(d <= 1e-6, `largest difference ${d}`);
    assert.equal(torch.pendingCheckpoints(), 0);
    t.diagnostic(`largest loss/gradient difference: ${d}`);
  }
  // In eval mode (HF: checkpointing only while training) the layers run as usual.
  model.eval();
  torch.scope(() => { model.forward(pixels); assert.equal(torch.pendingCheckpoints(), 0); });
  pixels.dispose();
});

test("Qwen2: gradient checkpointing gives the same loss and gradients (left padding, attention dropout), through torch.setGradientCheckpointing", (t) => {
  // Attention dropout 0.2: the rerun must draw the forward's dropout mask again.
  const model = wellConditionedQwen2(qwen2Preset("tiny", { numHiddenLayers: 3, attentionDropout: 0.2 })).train();
  const ids = torch.randint(0, 99, [2, 7], { generator: new torch.Generator(2) });
  const attentionMask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]], { dtype: "int64" });
  const loss = () => {
    torch.manualSeed(3);
    const { logits } = model.forward({ inputIds: ids, attentionMask }); // [B, T, V]
    return F.crossEntropy(logits.slice(1, 0, -1).reshape(-1, 99), ids.slice(1, 1).reshape(-1));
  };
  const plain = gradients(model, loss);
  assert.deepEqual(torch.setGradientCheckpointing(model), ["model"]);
  const ckpt = gradients(model, loss);
  const d = largestDifference(plain, ckpt);
  t.diagnostic(`largest loss/gradient difference: ${d}`);
  assert.ok(d <= 1e-6, `largest difference ${d}`);
  assert.equal(torch.pendingCheckpoints(), 0);
  // Another dropout seed changes the loss, so the comparison above can fail.
  const other = gradients(model, () => { torch.manualSeed(4); return F.crossEntropy(model.forward({ inputIds: ids, attentionMask }).logits.slice(1, 0, -1).reshape(-1, 99), ids.slice(1, 1).reshape(-1)); });
  assert.notEqual(other.loss, ckpt.loss);
  // With a KV cache (generation) the layers run as usual: a rerun would append to the cache twice.
  torch.scope(() => { model.forward({ inputIds: ids, useCache: true }).pastKeyValues!.dispose(); assert.equal(torch.pendingCheckpoints(), 0); });
  for (const x of [ids, attentionMask]) x.dispose();
});

test("Qwen2.5-VL: vision-block checkpointing gives the same loss and gradients (two images, window and full attention), through torch.setGradientCheckpointing", (t) => {
  // The tiny preset (vision depth 3, block 1 full attention), re-initialised so that every
  // gradient is far above the 1e-6 tolerance (HF's std 0.02 leaves the tower's gradients ~1e-7).
  const generator = new torch.Generator(0);
  const model = new Qwen2_5_VLForConditionalGeneration(qwen2_5_vlPreset("tiny"), { generator }).train();
  for (const [name, p] of model.namedParameters()) {
    if (p.ndim === 1 && !name.endsWith("bias")) nn.init.normal_(p, 1, 0.2, generator); // RMSNorm gains
    else if (name.endsWith("bias")) nn.init.normal_(p, 0, 0.2, generator);
    else if (name.includes("embed_tokens")) nn.init.normal_(p, 0, 1, generator);
    else nn.init.normal_(p, 0, 1 / Math.sqrt(p.shape.slice(1).reduce((a, b) => a * b, 1)), generator);
  }
  const cfg = model.config, v = cfg.vision;
  // Two images of 6×8 and 4×4 patches: 12 + 4 merged tokens; 6×8 spans several 2×2-token windows.
  const grids: GridThw[] = [[1, 6, 8], [1, 4, 4]];
  const pixelValues = torch.randn([48 + 16, v.patchDim], { generator: new torch.Generator(1) });
  const image = (n: number) => [cfg.visionStartTokenId, ...Array<number>(n).fill(cfg.imageTokenId), cfg.visionEndTokenId];
  const ids = torch.tensor([[5, 6, ...image(12), 7, 8, ...image(4), 9, 10]], { dtype: "int64" }); // [1, 24]
  let pendingAfterForward = -1;
  const loss = () => {
    const { logits } = model.forward({ inputIds: ids, pixelValues, imageGridThw: grids }); // [1, T, V]
    pendingAfterForward = torch.pendingCheckpoints();
    return F.crossEntropy(logits.slice(1, 0, -1).reshape(-1, cfg.text.vocabSize), ids.slice(1, 1).reshape(-1));
  };
  const plain = gradients(model, loss);
  assert.equal(pendingAfterForward, 0);
  const visualGrads = [...plain.grads].filter(([n]) => n.startsWith("model.visual."));
  assert.equal(visualGrads.length, [...model.visual.namedParameters()].length, "every vision parameter gets a gradient");
  const smallest = Math.min(...visualGrads.map(([, g]) => g.reduce((m, x) => Math.max(m, Math.abs(x)), 0)));
  t.diagnostic(`smallest largest-|gradient| over the vision parameters: ${smallest}`);
  assert.ok(smallest > 1e-4, `a vision gradient is too small for the comparison to mean anything: ${smallest}`);

  // The vision tower alone: one segment per block, rerun in backward.
  model.visual.gradientCheckpointing = true;
  const visionOnly = gradients(model, loss);
  assert.equal(pendingAfterForward, v.depth);
  const dv = largestDifference(plain, visionOnly);
  t.diagnostic(`vision blocks checkpointed: largest loss/gradient difference ${dv}`);
  assert.ok(dv <= 1e-6, `largest difference ${dv}`);
  assert.equal(torch.pendingCheckpoints(), 0);

  // The whole VLM, as a trainer turns it on: vision blocks and decoder layers.
  assert.deepEqual(torch.setGradientCheckpointing(model).sort(), ["model.language_model", "model.visual"]);
  const all = gradients(model, loss);
  assert.equal(pendingAfterForward, v.depth + cfg.text.numHiddenLayers);
  const d = largestDifference(plain, all);
  t.diagnostic(`vision blocks and decoder layers checkpointed: largest loss/gradient difference ${d}`);
  assert.ok(d <= 1e-6, `largest difference ${d}`);
  assert.equal(torch.pendingCheckpoints(), 0);

  // In eval mode (HF: checkpointing only while training) the blocks run as usual.
  model.eval();
  torch.scope(() => { model.visual.forward(pixelValues, grids); assert.equal(torch.pendingCheckpoints(), 0); });
  for (const x of [pixelValues, ids]) x.dispose();
});

/**
 * Peak resident memory of a fresh process that runs `body` (an ES module snippet with `torch` and
 * the models imported) after building its model; reported in bytes.
 */
function peakRss(body: string): number {
  const here = new URL(".", import.meta.url).href;
  const code = `
    import { torch } from "@mindseye/torch";
    import * as vit from "${here}vit.js";
    import * as qwen2 from "${here}qwen2.js";
    ${body}
    console.log(JSON.stringify({ maxRss: process.resourceUsage().maxRSS * 1024 }));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], {
    encoding: "utf8",
    cwd: new URL("../../", import.meta.url).pathname, // the mindseye package, so @mindseye/torch resolves
    env: { ...process.env, MINDSEYE_NUM_THREADS: "1", MINDSEYE_BLAS_THREADS: "1" },
  });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { maxRss: number }).maxRss;
}

test("ViT: checkpointing lowers a training step's peak memory (8 layers, 8 × 257 tokens, fresh processes)", (t) => {
  const step = (on: boolean) => `
    const cfg = vit.resolveVitConfig({ variant: "clip", hiddenSize: 128, intermediateSize: 512, numHiddenLayers: 8, numAttentionHeads: 4, imageSize: 64, patchSize: 4 });
    const model = new vit.VitVisionModel(cfg, { generator: new torch.Generator(0) }).train();
    model.gradientCheckpointing = ${on};
    const pixels = torch.randn([8, 3, 64, 64]);
    torch.scope(() => model.forward(pixels).pooled.pow(2).mean().backward());`;
  const plain = peakRss(step(false)), ckpt = peakRss(step(true));
  const said = `peak RSS: ${(plain / 1e6).toFixed(0)} MB plain, ${(ckpt / 1e6).toFixed(0)} MB with checkpointing`;
  t.diagnostic(said);
  // Activations per layer ≈ 8 × 257 × (~12 × 128 + 4 × 257) floats ≈ 21 MB, 8 layers ≈ 170 MB.
  assert.ok(plain - ckpt > 60e6, said);
});

test("Qwen2: checkpointing lowers a training step's peak memory (8 layers, 4 × 256 tokens, fresh processes)", (t) => {
  const step = (on: boolean) => `
    const model = new qwen2.Qwen2ForCausalLM(qwen2.qwen2Preset("tiny", { hiddenSize: 128, intermediateSize: 512, numHiddenLayers: 8 }), { generator: new torch.Generator(0) }).train();
    model.model.gradientCheckpointing = ${on};
    const ids = torch.randint(0, 99, [4, 256]);
    torch.scope(() => model.forward({ inputIds: ids }).logits.pow(2).mean().backward());`;
  const plain = peakRss(step(false)), ckpt = peakRss(step(true));
  const said = `peak RSS: ${(plain / 1e6).toFixed(0)} MB plain, ${(ckpt / 1e6).toFixed(0)} MB with checkpointing`;
  t.diagnostic(said);
  // Activations per layer ≈ 4 × 256 × (~16 × 128 + 3 × 512) floats ≈ 15 MB, 8 layers ≈ 120 MB.
  assert.ok(plain - ckpt > 40e6, said);
});
