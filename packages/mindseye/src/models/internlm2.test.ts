// InternLM2: the golden fixture from fixtures/models/make_internvl_golden.py (modeling_internlm2.py
// in plain PyTorch 1.13: packed wqkv with GQA 4/2 and 4/1, plain, dynamic-NTK and linear RoPE,
// greedy decoding with the reference's KV cache), the KV cache, checkpoints in the published layout,
// and config.json reading and its errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { wellConditioned, configRefusal } from "./test_weights.js";
import { KVCache, rotaryInvFreq } from "./qwen2.js";
import { generate } from "./generation.js";
import {
  InternLM2ForCausalLM, INTERNLM2_PRESETS, internLM2Preset, internLM2FromHfConfig, internLM2ToHfConfig, internLM2InvFreq, resolveInternLM2,
  type ResolvedInternLM2Config,
} from "./internlm2.js";

// dist/models/internlm2.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/internvl_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_internvl_golden.py";

const tiny = internLM2Preset("tiny");
const dynamic = internLM2Preset("tiny", { numKeyValueHeads: 1, bias: true, maxPositionEmbeddings: 8, ropeScaling: { type: "dynamic", factor: 2 } });
const newModel = (cfg: ResolvedInternLM2Config = tiny, seed = 0) => wellConditioned(new InternLM2ForCausalLM(cfg, { generator: new torch.Generator(seed) }).eval(), seed);
const ids = (rows: number[][]) => torch.tensor(rows, { dtype: "int64" });
const free = (m: InternLM2ForCausalLM) => m.parameters().forEach((p) => p.dispose());
const tmp = () => mkdtempSync(join(tmpdir(), "mindseye-internlm2-"));
const maxDiff = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.shape, b.shape);
  return torch.scope(() => a.sub(b).abs().max().item());
};

test("golden: logits and greedy tokens (KV cache) match the reference InternLM2 within 1e-4 (plain, dynamic-NTK and linear RoPE; GQA 4/2, 4/1, MHA)", (t) => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  const get = (k: string) => fixture.get(k) ?? assert.fail(`${GOLDEN} has no tensor "${k}"; ${REGENERATE}`);
  const worst: Record<string, number> = {};
  try {
    for (const c of ["lm_base", "lm_dynamic", "lm_linear"]) {
      const dir = tmp();
      try {
        writeFileSync(join(dir, "config.json"), meta[`${c}_config`] ?? assert.fail(`${GOLDEN}: no ${c}_config; ${REGENERATE}`));
        const prefix = `${c}.weight.`;
        io.saveFile(join(dir, "model.safetensors"), new Map([...fixture].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v])));
        const model = InternLM2ForCausalLM.fromPretrained(dir).eval();
        if (c === "lm_dynamic") assert.deepEqual(model.cfg, dynamic);
        const mask = get(`${c}.attention_mask`), inputIds = get(`${c}.input_ids`);
        torch.noGrad(() => torch.scope(() => {
          const out = model.forward({ inputIds, attentionMask: mask });
          const [B, T] = mask.shape as [number, number];
          const m = mask.toFloat64Values();
          let d = 0;
          for (let b = 0; b < B; b++) {
            for (let i = 0; i < T; i++) if (m[b * T + i] !== 0) d = Math.max(d, maxDiff(out.logits.select(0, b).select(0, i), get(`${c}.logits`).select(0, b).select(0, i)));
          }
          worst[`${c} logits`] = d;
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
    for (const v of fixture.values()) v.dispose();
  }
  for (const [k, d] of Object.entries(worst)) t.diagnostic(`${k}: max |Δ| ${d}`);
  for (const [k, d] of Object.entries(worst)) assert.ok(d <= 1e-4, `${k}: max |Δ| ${d}`);
});

test("wqkv unpacking: per KV head, its group's queries, then its key, then its value (the reference's (num_kv_heads, groups + 2, head_dim))", () => {
  // Rows of wqkv laid out as the reference reads them; a model whose wqkv is the identity on those
  // rows shows which rows become q, k and v through the attention output with one token.
  const cfg = internLM2Preset("tiny", { numHiddenLayers: 1 }); // 4 query heads over 2 KV heads, head dim 8
  const m = newModel(cfg);
  torch.noGrad(() => torch.scope(() => {
    const attn = m.model.layers.at(0).attention;
    const x = torch.randn([1, 1, 32], { generator: new torch.Generator(4) });
    const qkv = attn.wqkv.forward(x).view(1, 1, 2, 4, 8); // [.., Hkv, g + 2, hd]
    // One token attends only to itself: the output per query head is its KV head's value.
    const rope = { cos: torch.ones([1, 1, 8]), sin: torch.zeros([1, 1, 8]) };
    const y = attn.forward(x, rope, null); // wo(values)
    const values = torch.cat([0, 0, 1, 1].map((h) => qkv.select(2, h).select(2, 3)), -1).view(1, 1, 32); // query head h·2 + j reads KV head h
    assert.ok(maxDiff(y, attn.wo.forward(values)) < 1e-6);
  }));
  free(m);
});

test("dynamic NTK: plain frequencies up to max_position_embeddings, then a larger base growing with the key length; linear divides by factor", () => {
  torch.scope(() => {
    const plain = rotaryInvFreq(8, 10000);
    assert.equal(maxDiff(internLM2InvFreq(dynamic, 8), plain), 0);
    const at9 = internLM2InvFreq(dynamic, 9).toFloat64Values(), at20 = internLM2InvFreq(dynamic, 20).toFloat64Values(), p = plain.toFloat64Values();
    const base = 10000 * ((2 * 9) / 8 - 1) ** (8 / 6);
    at9.forEach((f, i) => assert.ok(Math.abs(f - 1 / base ** ((2 * i) / 8)) <= 1e-6 * Math.max(f, 1e-3), `frequency ${i}`));
    assert.equal(at9[0], p[0], "the first frequency (1) never moves");
    for (let i = 1; i < p.length; i++) assert.ok(at20[i]! < at9[i]! && at9[i]! < p[i]!, `frequency ${i} falls as the sequence grows`);
    const lin = internLM2InvFreq(internLM2Preset("tiny", { ropeScaling: { type: "linear", factor: 2 } }), 3).toFloat64Values();
    lin.forEach((f, i) => assert.ok(Math.abs(f - p[i]! / 2) <= 1e-7 * p[i]!));
  });
});

test("KV cache: chunked steps equal full recomputation under plain RoPE with left padding", () => {
  const model = newModel(tiny, 1);
  const rows = [[0, 0, 7, 8, 9, 10, 11, 12, 13, 14], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]];
  const maskRows = [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], rows[1]!.map(() => 1)];
  torch.noGrad(() => torch.scope(() => {
    const all = ids(rows), mask = ids(maskRows);
    const full = model.forward({ inputIds: all, attentionMask: mask }).logits;
    const cache = new KVCache(tiny.numHiddenLayers);
    try {
      let at = 0;
      for (const n of [4, 1, 3, 2]) {
        const step = model.forward({ inputIds: all.narrow(1, at, n), attentionMask: mask.narrow(1, 0, at + n), pastKeyValues: cache });
        const d = maxDiff(step.logits.select(0, 1), full.select(0, 1).narrow(0, at, n));
        assert.ok(d <= 1e-5, `positions ${at}..${at + n - 1}: max |Δ| ${d}`);
        at += n;
      }
    } finally {
      cache.dispose();
    }
  }));
  free(model);
});

test("savePretrained → fromPretrained in the published layout: same weights and logits; a tied output is saved once", () => {
  for (const cfg of [dynamic, internLM2Preset("tiny", { tieWordEmbeddings: true })]) {
    const model = newModel(cfg, 2);
    const dir = tmp();
    try {
      model.savePretrained(dir);
      const names = [...io.readHeader(join(dir, "model.safetensors")).tensors.keys()];
      for (const n of ["model.tok_embeddings.weight", "model.layers.1.attention.wqkv.weight", "model.layers.1.attention.wo.weight", "model.layers.1.attention_norm.weight",
        "model.layers.1.feed_forward.w1.weight", "model.layers.1.feed_forward.w3.weight", "model.layers.1.feed_forward.w2.weight", "model.layers.1.ffn_norm.weight", "model.norm.weight"]) assert.ok(names.includes(n), n);
      assert.equal(names.includes("output.weight"), !cfg.tieWordEmbeddings);
      assert.equal(names.includes("model.layers.0.attention.wqkv.bias"), cfg.bias);
      const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual([json.model_type, json.architectures, json.rope_scaling], ["internlm2", ["InternLM2ForCausalLM"], cfg.ropeScaling]);
      const loaded = InternLM2ForCausalLM.fromPretrained(dir).eval();
      assert.deepEqual(loaded.cfg, model.cfg);
      torch.noGrad(() => torch.scope(() => {
        const x = ids([[1, 5, 9, 4, 7, 3, 8, 11, 12, 13]]);
        assert.equal(maxDiff(model.forward({ inputIds: x }).logits, loaded.forward({ inputIds: x }).logits), 0);
      }));
      free(loaded);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      free(model);
    }
  }
});

test("config.json that does not describe the checkpoint is refused before allocation, naming the field", () => {
  const model = newModel(tiny);
  const dir = tmp();
  try {
    model.savePretrained(dir);
    const { refuse } = configRefusal(dir, (d) => InternLM2ForCausalLM.fromPretrained(d));
    refuse({ num_hidden_layers: 32 }, /field "num_hidden_layers" says 32, but the checkpoint has weights for 2 layers/);
    refuse({ num_key_value_heads: 4 }, /field "\(num_attention_heads \+ 2 × num_key_value_heads\) × head_dim \(\(4 \+ 2 × 4\) × 8\)" says 96, but the checkpoint's model\.layers\.0\.attention\.wqkv\.weight .* has shape \[64, 32\]/);
    refuse({ vocab_size: 92544 }, /field "vocab_size" says 92544, but the checkpoint's model\.tok_embeddings\.weight/);
    refuse({ bias: undefined }, /field "bias" says true, but the checkpoint lacks model\.layers\.0\.attention\.wqkv\.bias/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    free(model);
  }
});

test("config.json: internlm2_5-7b-chat as published reads as its preset; presets round-trip; errors say what and where", () => {
  const published = {
    architectures: ["InternLM2ForCausalLM"], attn_implementation: "eager", auto_map: { AutoConfig: "configuration_internlm2.InternLM2Config" }, bias: false, bos_token_id: 1,
    eos_token_id: 2, hidden_act: "silu", hidden_size: 4096, initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768, model_type: "internlm2",
    num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8, pad_token_id: 2, pretraining_tp: 1, rms_norm_eps: 1e-5,
    rope_scaling: { type: "dynamic", factor: 2.0 }, rope_theta: 1000000, tie_word_embeddings: false, torch_dtype: "bfloat16", use_cache: true, vocab_size: 92544,
  };
  const cfg = internLM2FromHfConfig(published);
  assert.deepEqual(cfg, internLM2Preset("internlm2.5-7b-chat"));
  assert.deepEqual([cfg.headDim, cfg.numKeyValueGroups], [128, 4]);
  for (const name of Object.keys(INTERNLM2_PRESETS)) assert.deepEqual(internLM2FromHfConfig(internLM2ToHfConfig(internLM2Preset(name))), internLM2Preset(name), name);
  assert.equal(internLM2FromHfConfig({ num_attention_heads: 8, hidden_size: 64 }).numKeyValueHeads, 8, "num_key_value_heads defaults to the heads");
  assert.equal(internLM2FromHfConfig({}).bias, true, "InternLM2Config's bias default is true");
  const bad = (patch: Record<string, unknown>, msg: RegExp) =>
    assert.throws(() => internLM2FromHfConfig({ ...published, ...patch }, "lm/config.json"), (e: Error) => e instanceof ConfigError && msg.test(e.message) && e.message.startsWith("lm/config.json"));
  bad({ rope_scaling: { type: "yarn", factor: 2 } }, /"rope_scaling": "type" must be "linear" or "dynamic", got "yarn"/);
  bad({ rope_scaling: { type: "dynamic", factor: 0.5 } }, /"rope_scaling": factor must be a number ≥ 1/);
  bad({ rope_scaling: { type: "dynamic", factor: 2, original_max_position_embeddings: 4096 } }, /must have exactly "type" and "factor"/);
  bad({ rope_pos_id_version: "v2pe" }, /"rope_pos_id_version": "v2pe" \(V2PE\) is not implemented/);
  bad({ model_type: "internlm" }, /"model_type": expected "internlm2"/);
  bad({ num_key_value_heads: 5 }, /"num_key_value_heads": 5 must divide the number of attention heads 32/);
  assert.throws(() => resolveInternLM2({ ropeScalling: null } as never), /internlm2\.ropeScalling: unknown InternLM2 config field \(did you mean "ropeScaling"\?\)/);
  assert.throws(() => internLM2Preset("internlm2.5-7b-chatt"), /unknown InternLM2 preset "internlm2\.5-7b-chatt" \(did you mean "internlm2\.5-7b-chat"\?\)/);
});
