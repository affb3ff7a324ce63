// Latent pretraining under train.lora: the new latent head trains (modules_to_save) and so do
// the latent query tokens' embedding rows (trainable_token_indices), while every other base weight
// stays bit-identical; the adapter saved in PEFT's layout reproduces the trained head on load.
// Before modules_to_save, the head stayed at its random init under lora: the similarity loss
// fell only as far as the adapters could take it (1.04 -> 0.42, against 0.67 -> 0.03 with the
// head training) and the saved head was the init head.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { generateWorld, resolveWorldOptions } from "../../world/generate.js";
import { loadStageRecipe, runRecipe } from "./index.js";
import { MindsEyeVLM } from "../../models/vlm.js";
import { loadLoraAdapter } from "../../models/lora.js";

const here = dirname(fileURLToPath(import.meta.url));
const configs = join(here, "..", "..", "..", "..", "..", "configs"); // dist/train/stages -> repo root
const TINY_ENCODER = ["encoder.hidden_size=32", "encoder.intermediate_size=64", "encoder.layers=2", "encoder.heads=2", "encoder.patch_size=16"];
const TINY_LM = ["lm.hidden_size=32", "lm.intermediate_size=64", "lm.layers=2", "lm.heads=2", "lm.kv_heads=1"];
const STEPS = 30;

const maxAbs = (a: Tensor, b: Tensor) => torch.scope(() => a.float().sub(b.float()).abs().amax().item());
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

test("latent-pretrain under train.lora: the latent head and the query tokens' rows learn, the base stays bit-identical, the adapter reloads the trained head", { timeout: 300_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-latent-lora-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 48, seed: 3, size: 48, latents: 4, workers: 0, log: () => {} }));
    const quick = [`world=${world}`, "train.steps=2", "train.batch_size=8", "train.warmup_steps=0"];
    const enc = await runRecipe(loadStageRecipe(join(configs, "world-encoder.yaml"), [...quick, `out=${join(root, "enc")}`, ...TINY_ENCODER]), { quiet: true });
    const base = await runRecipe(loadStageRecipe(join(configs, "vlm-base.yaml"), [...quick, `encoder=${enc}`, `out=${join(root, "base")}`, ...TINY_LM]), { quiet: true });
    // the similarity term alone (λ_nt = λ_align = 0), so its fall is the head's and the adapters' doing
    const recipe = join(root, "latent-lora.yaml");
    writeFileSync(recipe, readFileSync(join(configs, "latent-pretrain.yaml"), "utf8").replace(/^train:\n/m, "train:\n  lora:\n    r: 4\n    alpha: 8\n    target_modules: [q_proj, v_proj]\n"));
    const out = join(root, "latent");
    const tuned = await runRecipe(loadStageRecipe(recipe, [
      `world=${world}`, `encoder=${enc}`, `base=${base}`, `targets=${join(root, "targets")}`, `out=${out}`, "pool=grid:4",
      "loss.lambda_nt=0", "loss.lambda_align=0", "loss.target_norm=none", `train.steps=${STEPS}`, "train.batch_size=8", "train.warmup_steps=0", "train.log_every=1", "train.lr=1e-2",
    ]), { quiet: true });

    // 1. the similarity loss falls clearly over the run
    const sim = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>).filter((m) => m.sim !== undefined).map((m) => m.sim!);
    assert.equal(sim.length, STEPS);
    const first = mean(sim.slice(0, 3)), last = mean(sim.slice(-3));
    t.diagnostic(`sim: first 3 steps ${first.toFixed(4)}, last 3 ${last.toFixed(4)} (${STEPS} steps)`);
    // With the head frozen at its init (before modules_to_save) the adapters alone got 1.04 -> 0.42 here.
    assert.ok(last < first - 0.3 && last < 0.15, `the similarity loss falls: ${first} -> ${last}`);

    // 2. the adapter: LoRA weights, the head as modules_to_save, the query rows as trainable tokens
    const adapterDir = join(out, "adapter");
    const config = JSON.parse(readFileSync(join(adapterDir, "adapter_config.json"), "utf8")) as { modules_to_save: string[]; trainable_token_indices: Record<string, number[]> };
    assert.deepEqual(config.modules_to_save, ["latent_head"]);
    const adapter = io.loadFile(join(adapterDir, "adapter_model.safetensors"));
    const model = MindsEyeVLM.fromPretrained(tuned), start = MindsEyeVLM.fromPretrained(base);
    const ids = model.config.latentTokenIds;
    assert.deepEqual(config.trainable_token_indices, { "language_model.model.embed_tokens": ids });
    const headKeys = [...model.latent_head!.stateDict().keys()];
    assert.deepEqual([...adapter.keys()].filter((k) => !/\.lora_[AB]\.weight$/.test(k)).sort(),
      [...headKeys.map((k) => `base_model.model.latent_head.${k}`), "base_model.model.language_model.model.embed_tokens.token_adapter.trainable_tokens_delta"].sort());

    // 3. the head learnt: it is not the head the stage initialised (same seeds, as latent_pretrain.ts)
    const init = MindsEyeVLM.fromPretrained(base);
    torch.manualSeed(0);
    init.attachLatentHead(model.config.latentHead!, ids, { generator: new torch.Generator(0) });
    const trainedHead = model.latent_head!.stateDict(), initHead = init.latent_head!.stateDict();
    const moved = Math.min(...headKeys.map((k) => maxAbs(trainedHead.get(k)!, initHead.get(k)!)));
    t.diagnostic(`every head tensor moved from its init by at least ${moved.toExponential(2)}`);
    assert.ok(moved > 1e-3, "every tensor of the latent head trained");

    // 4. the base is bit-identical outside the adapted projections, the head and the query rows
    const before = start.stateDict(), after = model.stateDict();
    const rows = torch.tensor(ids, { dtype: "int64" });
    const others = torch.tensor([...Array(model.config.text.vocabSize).keys()].filter((i) => !ids.includes(i)), { dtype: "int64" });
    let checked = 0;
    for (const [k, v] of before) {
      if (/\.(q_proj|v_proj)\.weight$/.test(k)) continue;
      if (/(embed_tokens|lm_head)\.weight$/.test(k)) {
        assert.equal(maxAbs(v.indexSelect(0, others), after.get(k)!.indexSelect(0, others)), 0, `${k}: the other rows are unchanged`);
        if (k.endsWith("embed_tokens.weight")) assert.ok(maxAbs(v.indexSelect(0, rows), after.get(k)!.indexSelect(0, rows)) > 1e-4, `${k}: the latent query rows trained`);
      } else {
        assert.equal(maxAbs(v, after.get(k)!), 0, `${k} is bit-identical to the base`);
      }
      checked += 1;
    }
    t.diagnostic(`${checked} base tensors compared`);

    // 5. save -> load: the adapter on a fresh base with a fresh head gives back the trained head and rows
    const fresh = MindsEyeVLM.fromPretrained(base);
    fresh.attachLatentHead(model.config.latentHead!, ids, { generator: new torch.Generator(7) });
    const lora = loadLoraAdapter(fresh, adapterDir);
    const reloaded = fresh.latent_head!.stateDict();
    for (const k of headKeys) assert.equal(maxAbs(reloaded.get(k)!, trainedHead.get(k)!), 0, `latent_head.${k} reloads bit for bit`);
    const delta = lora.tokens.get("language_model.model.embed_tokens")!.token_adapter.trainable_tokens_delta;
    assert.equal(maxAbs(delta, after.get("language_model.model.embed_tokens.weight")!.indexSelect(0, rows)), 0, "the trained rows reload");
    // the adapted model (unmerged) predicts what the merged, saved one does
    const x = torch.tensor([[...ids.map(() => 5), ...ids], [...ids.map(() => 9), ...ids]], { dtype: "int64" });
    const gap = torch.noGrad(() => maxAbs(fresh.predictLatents(x).latents, model.predictLatents(x).latents));
    t.diagnostic(`adapter on the base vs merged model: max |Δ latent| ${gap.toExponential(2)}`);
    assert.ok(gap < 1e-4, `reloaded adapter predicts the saved model's latents (max diff ${gap})`);
    for (const m of [model, start, init, fresh]) m.parameters().forEach((p) => p.dispose());
    for (const v of adapter.values()) v.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
