// Llama: the golden fixture from fixtures/models/make_llama_golden.py (HF's modeling_llama.py in
// plain PyTorch 1.13: plain, llama3 and linear RoPE, biases, head_dim, tied embeddings, greedy
// decoding), the KV cache, checkpoints in HF's layout, and config.json reading and its errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readdirSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, F, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { wellConditioned, configRefusal } from "./test_weights.js";
import { KVCache, positionIdsFromMask } from "./qwen2.js";
import { generate } from "./generation.js";
import {
  LlamaForCausalLM, LLAMA_PRESETS, llamaPreset, resolveLlama, llamaFromHfConfig, llamaToHfConfig, llamaInvFreq, type ResolvedLlamaConfig,
} from "./llama.js";

// dist/models/llama.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/llama_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_llama_golden.py";

const tiny = llamaPreset("tiny");
/** Every option away from its default: head_dim apart from hidden/heads, biases, GQA 4/1, llama3 RoPE, tied. */
const variant = llamaPreset("tiny", {
  numKeyValueHeads: 1, headDim: 16, attentionBias: true, mlpBias: true, tieWordEmbeddings: true,
  ropeScaling: { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
});

const newModel = (cfg: ResolvedLlamaConfig = tiny, seed = 0) => wellConditioned(new LlamaForCausalLM(cfg, { generator: new torch.Generator(seed) }).eval(), seed);
const ids = (rows: number[][]) => torch.tensor(rows, { dtype: "int64" });
const free = (m: LlamaForCausalLM) => m.parameters().forEach((p) => p.dispose());
const tmp = () => mkdtempSync(join(tmpdir(), "mindseye-llama-"));

/** max |a − b| over all elements. */
function maxDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return torch.scope(() => a.sub(b).abs().max().item());
}

test("golden: logits, hidden states, RoPE frequencies and greedy tokens (KV cache) match HF's Llama within 1e-4", (t) => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  const get = (k: string) => fixture.get(k) ?? assert.fail(`${GOLDEN} has no tensor "${k}"; ${REGENERATE}`);
  const worst: Record<string, number> = {};
  try {
    for (const c of ["base", "variant", "linear"]) {
      const json = meta[`${c}_config`] ?? assert.fail(`${GOLDEN}: no ${c}_config in __metadata__; ${REGENERATE}`);
      const dir = tmp();
      try {
        const prefix = `${c}.weight.`;
        writeFileSync(join(dir, "config.json"), json);
        io.saveFile(join(dir, "model.safetensors"), new Map([...fixture].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t])));
        const model = LlamaForCausalLM.fromPretrained(dir).eval();
        assert.equal(model.lm_head.weight === model.model.embed_tokens.weight, c === "variant", `${c}: tied as config.json says`);
        const mask = get(`${c}.attention_mask`), inputIds = get(`${c}.input_ids`);
        torch.noGrad(() => torch.scope(() => {
          const inv = llamaInvFreq(model.cfg);
          worst[`${c} inv_freq`] = maxDiff(inv, get(`${c}.inv_freq`));
          assert.deepEqual(positionIdsFromMask(mask, mask.shape[1]!).tolist(), get(`${c}.position_ids`).tolist());
          const out = model.forward({ inputIds, attentionMask: mask });
          const [B, T] = mask.shape as [number, number];
          const m = mask.toFloat64Values();
          let d = 0;
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < T; t++) {
              if (m[b * T + t] === 0) continue; // padded queries mean nothing; checked finite below
              const at = (x: Tensor) => x.select(0, b).select(0, t);
              d = Math.max(d, maxDiff(at(out.logits), at(get(`${c}.logits`))), maxDiff(at(out.lastHiddenState), at(get(`${c}.last_hidden_state`))));
            }
          }
          worst[`${c} logits`] = d;
          assert.equal(out.logits.isfinite().all().item(), 1);
          const want = get(`${c}.greedy`);
          const { tokens } = generate(model, { inputIds, attentionMask: mask, maxNewTokens: want.shape[1]! });
          assert.deepEqual(tokens, want.tolist(), `${c}: greedy tokens with the KV cache`);
        }));
        free(model);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    for (const t of fixture.values()) t.dispose();
  }
  for (const [k, d] of Object.entries(worst)) t.diagnostic(`${k}: max |Δ| ${d}`);
  for (const [k, d] of Object.entries(worst)) assert.ok(d <= (k.endsWith("inv_freq") ? 1e-7 : 1e-4), `${k}: max |Δ| ${d}`);
});

test("llama3 RoPE: short wavelengths kept, long ones divided by factor, the band between blended; linear divides all", () => {
  torch.scope(() => {
    const plain = llamaInvFreq(llamaPreset("tiny", { headDim: 16 })).toFloat64Values();
    const l3 = llamaInvFreq(variant).toFloat64Values();
    const lin = llamaInvFreq(llamaPreset("tiny", { headDim: 16, ropeScaling: { ropeType: "linear", factor: 2 } })).toFloat64Values();
    plain.forEach((f, i) => {
      const wavelen = (2 * Math.PI) / f;
      const want = wavelen < 16 ? f : wavelen > 64 ? f / 8 : null; // original 64: high band < 64/4, low band > 64/1
      if (want !== null) assert.ok(Math.abs(l3[i]! - want) <= 1e-7 * f, `frequency ${i}`);
      else assert.ok(l3[i]! < f && l3[i]! > f / 8, `frequency ${i} blended`);
      assert.ok(Math.abs(lin[i]! - f / 2) <= 1e-7 * f);
    });
  });
});

test("shapes and weights: biases only where config.json asks, head_dim sets q/o widths, tied lm_head is one Parameter", () => {
  const plain = newModel(), full = newModel(variant);
  const sd = plain.stateDict(), sv = full.stateDict();
  assert.equal(sd.has("model.layers.0.self_attn.q_proj.bias") || sd.has("model.layers.0.mlp.gate_proj.bias"), false);
  for (const n of ["q_proj", "k_proj", "v_proj", "o_proj"]) assert.ok(sv.has(`model.layers.0.self_attn.${n}.bias`), n);
  for (const n of ["gate_proj", "up_proj", "down_proj"]) assert.ok(sv.has(`model.layers.1.mlp.${n}.bias`), n);
  assert.deepEqual(sv.get("model.layers.0.self_attn.q_proj.weight")!.shape, [4 * 16, 32]);
  assert.deepEqual(sv.get("model.layers.0.self_attn.k_proj.weight")!.shape, [16, 32]);
  assert.deepEqual(sv.get("model.layers.0.self_attn.o_proj.weight")!.shape, [32, 4 * 16]);
  assert.equal(full.lm_head.weight, full.model.embed_tokens.weight);
  const { vocabSize: V, hiddenSize: D, intermediateSize: I, numHiddenLayers: L } = tiny;
  assert.equal(plain.numParameters(), 2 * V * D + L * (D * D + 2 * D * 16 + D * D + 3 * D * I + 2 * D) + D);
  torch.noGrad(() => torch.scope(() => {
    const out = full.forward({ inputIds: ids([[1, 5, 9, 4]]), outputHiddenStates: true, logitsToKeep: 1 });
    assert.deepEqual(out.logits.shape, [1, 1, V]);
    assert.equal(out.hiddenStates!.length, L + 1);
  }));
  free(plain); free(full);
});

test("KV cache: chunked and single-token steps equal full recomputation (llama3 RoPE, biases, GQA 4/1, left padding)", () => {
  const model = newModel(variant, 1);
  const rows = [[0, 0, 7, 8, 9, 10, 11, 12, 13, 14], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]];
  const maskRows = [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], rows[1]!.map(() => 1)];
  torch.noGrad(() => torch.scope(() => {
    const all = ids(rows), mask = ids(maskRows);
    const full = model.forward({ inputIds: all, attentionMask: mask }).logits;
    const cache = new KVCache(variant.numHiddenLayers);
    try {
      let at = 0;
      for (const n of [4, 1, 3, 2]) {
        const step = model.forward({ inputIds: all.narrow(1, at, n), attentionMask: mask.narrow(1, 0, at + n), pastKeyValues: cache });
        at += n;
        const from = Math.max(at - n, 2); // row 0's first two slots are padding
        if (from < at) {
          const d = Math.max(
            maxDiff(step.logits.select(0, 0).narrow(0, from - (at - n), at - from), full.select(0, 0).narrow(0, from, at - from)),
            maxDiff(step.logits.select(0, 1), full.select(0, 1).narrow(0, at - n, n)),
          );
          assert.ok(d <= 1e-5, `positions up to ${at - 1}: max |Δ| ${d}`);
        }
      }
    } finally {
      cache.dispose();
    }
  }));
  free(model);
});

test("gradients: loss.backward() reaches every parameter, biases included", () => {
  const model = newModel(variant, 2).train();
  torch.scope(() => {
    const x = torch.randint(0, tiny.vocabSize, [2, 6], { generator: new torch.Generator(1) });
    const logits = model.forward({ inputIds: x, attentionMask: ids([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) }).logits;
    F.crossEntropy(logits.view(-1, tiny.vocabSize), x.roll(-1, 1).view(-1)).backward();
    for (const [name, p] of model.namedParameters()) {
      assert.ok(p.grad !== null && p.grad.abs().sum().item() > 0, `${name} has no (or an all-zero) gradient`);
    }
  });
  free(model);
});

test("gradient checkpointing: each layer is rerun in backward, with the same loss and gradients", () => {
  const runs = [false, true].map((ckpt) => {
    const model = newModel(variant, 5).train();
    assert.deepEqual(torch.setGradientCheckpointing(model, ckpt), ["model"]);
    const grads = torch.scope(() => {
      const x = torch.randint(0, tiny.vocabSize, [2, 6], { generator: new torch.Generator(3) });
      const logits = model.forward({ inputIds: x, attentionMask: ids([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) }).logits;
      assert.equal(torch.pendingCheckpoints(), ckpt ? variant.numHiddenLayers : 0, "one pending segment per layer");
      const loss = F.crossEntropy(logits.view(-1, tiny.vocabSize), x.roll(-1, 1).view(-1));
      loss.backward();
      return [loss.item(), ...model.namedParameters().map(([, p]) => p.grad!.abs().sum().item())];
    });
    assert.equal(torch.pendingCheckpoints(), 0);
    free(model);
    return grads;
  });
  assert.deepEqual(runs[1], runs[0]);
});

test("savePretrained → fromPretrained is the identity in HF's layout: untied, tied with biases, sharded, bf16", () => {
  for (const [cfg, maxShardBytes] of [[tiny, undefined], [variant, undefined], [tiny, 4096]] as const) {
    const model = newModel(cfg, 3);
    const dir = tmp();
    try {
      model.savePretrained(dir, maxShardBytes ? { maxShardBytes } : {});
      const names = [...io.loadSharded(dir).entries()].map(([k, t]) => (t.dispose(), k));
      assert.equal(names.includes("lm_head.weight"), !cfg.tieWordEmbeddings, "a tied lm_head is not saved (as HF)");
      assert.ok(names.includes("model.layers.1.post_attention_layernorm.weight") && names.includes("model.norm.weight"));
      if (maxShardBytes) assert.ok(readdirSync(dir).includes("model.safetensors.index.json"));
      const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual([config.model_type, config.architectures, config.head_dim, config.attention_bias], ["llama", ["LlamaForCausalLM"], cfg.headDim, cfg.attentionBias]);
      const loaded = LlamaForCausalLM.fromPretrained(dir).eval();
      assert.deepEqual(loaded.cfg, model.cfg);
      const sa = model.stateDict(), sb = loaded.stateDict();
      assert.deepEqual([...sb.keys()].sort(), [...sa.keys()].sort());
      for (const [k, t] of sa) assert.equal(maxDiff(t, sb.get(k)!), 0, k);
      torch.noGrad(() => torch.scope(() => {
        const x = ids([[1, 2, 3, 4]]);
        assert.equal(maxDiff(model.forward({ inputIds: x }).logits, loaded.forward({ inputIds: x }).logits), 0);
      }));
      free(loaded);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    free(model);
  }
  const model = newModel(tiny, 4);
  const dir = tmp();
  try {
    model.savePretrained(dir, { dtype: "bfloat16" });
    const bf16 = LlamaForCausalLM.fromPretrained(dir, { dtype: "bfloat16" });
    assert.equal(bf16.cfg.torchDtype, "bfloat16");
    for (const p of bf16.parameters()) assert.equal(p.dtype, "bfloat16");
    free(bf16);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    free(model);
  }
});

test("config.json that does not describe the checkpoint is refused before allocation, naming the field", () => {
  const model = newModel(variant);
  const dir = tmp();
  try {
    model.savePretrained(dir);
    const { good, refuse } = configRefusal(dir, (d) => LlamaForCausalLM.fromPretrained(d), { namesFile: true });
    refuse({ num_hidden_layers: 3 }, /field "num_hidden_layers" says 3, but the checkpoint has weights for 2 layers/);
    refuse({ head_dim: null }, /field "num_attention_heads × head_dim \(4 × 8\)" says 32, but the checkpoint's model\.layers\.0\.self_attn\.q_proj\.weight .* has shape \[64, 32\]/);
    refuse({ vocab_size: 1000 }, /field "vocab_size" says 1000/);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...good, attention_bias: false }));
    assert.throws(() => LlamaForCausalLM.fromPretrained(dir), /attention_bias: false[\s\S]*unexpected keys \(8\): .*model\.layers\.0\.self_attn\.q_proj\.bias/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    free(model);
  }
});

test("config.json: presets round-trip, published Llama 3.2 and llava-hf text configs read as HF reads them", () => {
  for (const name of Object.keys(LLAMA_PRESETS)) assert.deepEqual(llamaFromHfConfig(llamaToHfConfig(llamaPreset(name))), llamaPreset(name), name);
  assert.deepEqual(llamaFromHfConfig(llamaToHfConfig(variant)), variant);
  // meta-llama/Llama-3.2-1B config.json as published.
  const published = {
    architectures: ["LlamaForCausalLM"], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000, eos_token_id: 128001, head_dim: 64,
    hidden_act: "silu", hidden_size: 2048, initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false,
    model_type: "llama", num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
    rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
    rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: "bfloat16", transformers_version: "4.45.0.dev0", use_cache: true, vocab_size: 128256,
  };
  assert.deepEqual(llamaFromHfConfig(published), llamaPreset("llama-3.2-1b"));
  // Newer transformers write rope_parameters (theta inside) instead of rope_scaling + rope_theta.
  const { rope_scaling: rs, rope_theta: theta, ...rest } = published;
  assert.deepEqual(llamaFromHfConfig({ ...rest, rope_parameters: { ...rs, rope_theta: theta } }), llamaPreset("llama-3.2-1b"));
  // llava-hf/llava-1.5-7b-hf's text_config lists a few fields; the rest are LlamaConfig's defaults.
  const text = llamaFromHfConfig({ _name_or_path: "lmsys/vicuna-7b-v1.5", architectures: ["LlamaForCausalLM"], max_position_embeddings: 4096, model_type: "llama", rms_norm_eps: 1e-5, torch_dtype: "float16", vocab_size: 32064 });
  assert.deepEqual(text, llamaPreset("vicuna-7b-v1.5"));
  assert.equal(text.headDim, 128);
});

test("config errors say what, where and what to do", () => {
  const base = llamaToHfConfig(tiny);
  const bad = (patch: Record<string, unknown>, msg: RegExp) =>
    assert.throws(() => llamaFromHfConfig({ ...base, ...patch }, "ckpt/config.json"), (e: Error) => e instanceof ConfigError && msg.test(e.message) && e.message.startsWith("ckpt/config.json"));
  bad({ rope_scaling: { rope_type: "dynamic", factor: 2 } }, /"rope_scaling": RoPE type "dynamic" is not supported \(MindsEye's Llama implements "default", "linear" and "llama3"/);
  bad({ rope_scaling: { rope_type: "llama3", factor: 8, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, /"rope_scaling": missing required field "low_freq_factor"/);
  bad({ rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } }, /"rope_scaling"\.highFreqFactor: must be a number above lowFreqFactor 4/);
  bad({ hidden_size: 30, head_dim: null }, /"hidden_size": 30 is not divisible by the number of attention heads 4 \(or set head_dim\)/);
  bad({ head_dim: 7 }, /"head_dim": head dim 7 must be even/);
  bad({ num_key_value_heads: 3 }, /"num_key_value_heads": 3 must divide/);
  bad({ hidden_act: "gelu" }, /"hidden_act": must be "silu"/);
  bad({ model_type: "qwen2" }, /"model_type": expected "llama", got "qwen2"/);
  bad({ attention_bias: "yes" }, /field "attention_bias" must be a boolean/);
  bad({ num_hidden_layers: 1e9 }, /"num_hidden_layers": 1000000000 is beyond any real model/);
  assert.throws(() => resolveLlama({ hiddenSize: 32, numAttentionHeads: 4, ropeScalling: null } as never), /llama\.ropeScalling: unknown Llama config field \(did you mean "ropeScaling"\?\)/);
  assert.throws(() => llamaPreset("llama-3.2-1B"), /unknown Llama preset "llama-3\.2-1B" \(did you mean "llama-3\.2-1b"\?\)/);
});
