import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, type Tensor } from "@mindseye/torch";
import { MindsEyeVLM, imageTokenCount, vlmConfigFromHf, vlmConfigToHf, type VlmConfig } from "./vlm.js";
import { vitPreset } from "./vit.js";
import { qwen2Preset } from "./qwen2.js";

const IMAGE = 90, LATENTS = [91, 92, 93, 94];
function config(withHead: boolean): VlmConfig {
  const text = qwen2Preset("tiny");
  return {
    vision: vitPreset("siglip-tiny"), text, visionFeatureLayer: -1, visionFeatureSelectStrategy: "default", imageTokenId: IMAGE,
    latentHead: withHead ? { type: "mlp", inputSize: text.hiddenSize, hiddenSize: 48, latentSize: 32, bias: true } : null,
    latentTokenIds: withHead ? LATENTS : [],
  };
}
const N = imageTokenCount(config(false)); // 16 patches
const ids = (rows: number[][]) => torch.tensor(rows, { dtype: "int64" });
const prompt = (before: number[], after: number[]) => [...before, ...Array<number>(N).fill(IMAGE), ...after];
const maxDiff = (a: Tensor, b: Tensor) => torch.scope(() => a.sub(b).abs().amax().item());
const free = (m: MindsEyeVLM) => m.parameters().forEach((p) => p.dispose());

test("image features replace the pad rows; earlier positions do not see the image", () => torch.scope(() => {
  torch.manualSeed(0);
  const m = new MindsEyeVLM(config(false));
  assert.equal(N, 16);
  const input = ids([prompt([1, 2], [3, 4])]);
  const a = m.forward({ inputIds: input, pixelValues: torch.randn([1, 3, 16, 16]) }).logits;
  const b = m.forward({ inputIds: input, pixelValues: torch.randn([1, 3, 16, 16]) }).logits;
  assert.deepEqual(a.shape, [1, N + 4, m.config.text.vocabSize]);
  assert.ok(maxDiff(a.narrow(1, 0, 2), b.narrow(1, 0, 2)) === 0, "text before the image is causal-independent of it");
  assert.ok(maxDiff(a.narrow(1, N + 2, 2), b.narrow(1, N + 2, 2)) > 1e-4, "text after the image sees it");
  assert.throws(() => m.forward({ inputIds: ids([[1, IMAGE, 2]]), pixelValues: torch.randn([1, 3, 16, 16]) }), /1 image tokens but 1 image\(s\) give 16 features/);
  assert.throws(() => m.forward({ inputIds: input }), /no pixelValues/);
  free(m);
}));

test("gradients reach the projector and the LM through the image features", () => torch.scope(() => {
  torch.manualSeed(1);
  const m = new MindsEyeVLM(config(false));
  m.vision_tower.requiresGrad_(false);
  m.forward({ inputIds: ids([prompt([1], [2])]), pixelValues: torch.randn([1, 3, 16, 16]) }).logits.sum().backward();
  assert.ok(m.multi_modal_projector.linear_1.weight.grad !== null);
  assert.ok(m.language_model.model.layers.at(0).self_attn.q_proj.weight.grad !== null);
  assert.equal(m.vision_tower.parameters()[0]!.grad, null);
  free(m);
}));

test("generation with images equals greedy decoding by full recomputation", () => torch.scope(() => {
  torch.manualSeed(2);
  const m = new MindsEyeVLM(config(false));
  const pixels = torch.randn([1, 3, 16, 16]);
  const start = prompt([5], [6, 7]);
  const { tokens } = m.generate({ inputIds: ids([start]), pixelValues: pixels, maxNewTokens: 4 });
  const seq = [...start];
  for (let i = 0; i < 4; i++) {
    const next = torch.noGrad(() => torch.scope(() => m.forward({ inputIds: ids([seq]), pixelValues: pixels }).logits.select(1, -1).argmax(-1).item()));
    seq.push(next);
  }
  assert.deepEqual(tokens[0], seq.slice(start.length));
  free(m);
}));

test("latent head: predictions at the latent positions; config and weights round-trip", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-vlm-"));
  try {
    torch.scope(() => {
      torch.manualSeed(3);
      const m = new MindsEyeVLM(config(true));
      const input = ids([[1, 2, 3, ...LATENTS], [4, 5, 6, ...LATENTS]]);
      const { latents, logits } = m.predictLatents(input);
      assert.deepEqual(latents.shape, [2, 4, 32]);
      assert.deepEqual(logits.shape, [2, 7, m.config.text.vocabSize]);
      assert.deepEqual(vlmConfigFromHf(vlmConfigToHf(m.config)), m.config);
      const after: VlmConfig = { ...m.config, imagePosition: "after_text" };
      assert.deepEqual(vlmConfigFromHf(vlmConfigToHf(after)), after, "image_position round-trips");
      assert.throws(() => vlmConfigFromHf({ ...vlmConfigToHf(after), image_position: "middle" }), /image_position must be "before_text" or "after_text", got "middle"/);
      m.savePretrained(dir);
      const back = MindsEyeVLM.fromPretrained(dir);
      assert.ok(maxDiff(back.predictLatents(input).latents, latents) === 0);
      free(m); free(back);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("config.json is checked against the checkpoint's shapes before the model is allocated", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-vlm-"));
  try {
    torch.scope(() => {
      const m = new MindsEyeVLM(config(false));
      m.savePretrained(dir);
      free(m);
    });
    const path = join(dir, "config.json");
    const good = JSON.parse(readFileSync(path, "utf8")) as { text_config: Record<string, number>; vision_config: Record<string, number> };
    writeFileSync(path, JSON.stringify({ ...good, text_config: { ...good.text_config, num_hidden_layers: good.text_config.num_hidden_layers! + 3 } }));
    assert.throws(() => MindsEyeVLM.fromPretrained(dir), /num_hidden_layers/);
    writeFileSync(path, JSON.stringify({ ...good, vision_config: { ...good.vision_config, hidden_size: 4096 } }));
    assert.throws(() => MindsEyeVLM.fromPretrained(dir), /hidden_size/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
