// Qwen2: shapes, masks, KV cache, checkpoints, configs, gradients, and the golden fixture from
// fixtures/models/make_qwen2_golden.py (HF's modeling_qwen2.py in plain PyTorch 1.13).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readdirSync, existsSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, F, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { wellConditionedQwen2 } from "./test_helpers.js";
import {
  Qwen2ForCausalLM, KVCache, QWEN2_PRESETS, qwen2Preset, resolveQwen2, fromHfConfig, toHfConfig,
  rotaryEmbeddings, positionIdsFromMask, type ResolvedQwen2Config,
} from "./qwen2.js";

// dist/models/qwen2.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/qwen2_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_qwen2_golden.py";

const tiny = qwen2Preset("tiny");

/**
 * A tiny model with weights of O(1) effect (HF's std-0.02 initialisation gives near-zero logits,
 * which would let mask and position tests pass for the wrong reason), as the golden fixture's.
 */
function newModel(cfg: ResolvedQwen2Config = tiny, seed = 0): Qwen2ForCausalLM {
  return wellConditionedQwen2(cfg, seed);
}
const ids = (rows: number[][]) => torch.tensor(rows, { dtype: "int64" });

/** max |a − b| over all elements. */
function maxDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return torch.scope(() => a.sub(b).abs().max().item());
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "mindseye-qwen2-"));
}

test("tiny preset: output shapes, hidden states and parameter count", () => {
  const model = newModel();
  const { vocabSize: V, hiddenSize: D, intermediateSize: I, numHiddenLayers: L, numKeyValueHeads: Hkv, headDim } = tiny;
  torch.noGrad(() => torch.scope(() => {
    const out = model.forward({ inputIds: torch.randint(0, V, [2, 7]), outputHiddenStates: true });
    assert.deepEqual(out.logits.shape, [2, 7, V]);
    assert.deepEqual(out.lastHiddenState.shape, [2, 7, D]);
    assert.equal(out.hiddenStates!.length, L + 1);
    for (const h of out.hiddenStates!) assert.deepEqual(h.shape, [2, 7, D]);
    assert.equal(out.hiddenStates![L], out.lastHiddenState, "the last hidden state is the normed output, as HF");
    assert.equal(out.pastKeyValues, undefined);
  }));
  const perLayer = D * D + D + 2 * (D * Hkv * headDim + Hkv * headDim) + D * D + 3 * D * I + 2 * D;
  assert.equal(model.numParameters(), 2 * V * D + L * perLayer + D);
  assert.deepEqual(model.stateDict().get("model.layers.1.self_attn.k_proj.weight")!.shape, [Hkv * headDim, D]);
  assert.equal(model.stateDict().get("model.layers.0.self_attn.o_proj.bias"), undefined, "o_proj has no bias");
  assert.ok(model.stateDict().has("model.layers.0.self_attn.v_proj.bias"));
});

test("causal mask: changing a future token leaves earlier logits unchanged", () => {
  const model = newModel();
  torch.noGrad(() => torch.scope(() => {
    const a = [5, 9, 14, 3, 77, 21, 8, 40];
    const b = [...a];
    b[5] = 60;
    const la = model.forward({ inputIds: ids([a]) }).logits, lb = model.forward({ inputIds: ids([b]) }).logits;
    assert.ok(maxDiff(la.narrow(1, 0, 5), lb.narrow(1, 0, 5)) <= 1e-6, "positions before the change");
    assert.ok(maxDiff(la.narrow(1, 5, 3), lb.narrow(1, 5, 3)) > 1e-3, "positions from the change on");
  }));
});

test("padding mask: a left-padded batch gives each sequence's own logits at its real positions", () => {
  const model = newModel();
  const seqs = [[11, 12, 13, 14, 15, 16, 17], [21, 22, 23], [31, 32, 33, 34, 35]];
  const T = 7;
  torch.noGrad(() => torch.scope(() => {
    const batch = ids(seqs.map((s) => [...Array<number>(T - s.length).fill(0), ...s]));
    const mask = ids(seqs.map((s) => [...Array<number>(T - s.length).fill(0), ...s.map(() => 1)]));
    const out = model.forward({ inputIds: batch, attentionMask: mask });
    assert.equal(torch.scope(() => out.logits.isfinite().all().item()), 1, "padded rows stay finite");
    seqs.forEach((s, i) => {
      const alone = model.forward({ inputIds: ids([s]) }).logits; // [1, n, V]
      const mine = out.logits.narrow(0, i, 1).narrow(1, T - s.length, s.length);
      const d = maxDiff(mine, alone);
      assert.ok(d <= 1e-5, `sequence ${i}: max |Δ| ${d}`);
    });
  }));
});

test("KV cache: logits with the cache equal full recomputation (chunks, single tokens, left padding)", () => {
  const model = newModel();
  const rows = [[0, 0, 7, 8, 9, 10, 11, 12, 13, 14], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]];
  const maskRows = [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], rows[1]!.map(() => 1)];
  torch.noGrad(() => torch.scope(() => {
    const all = ids(rows), mask = ids(maskRows);
    const full = model.forward({ inputIds: all, attentionMask: mask }).logits; // [2, 10, V]
    const cache = new KVCache(tiny.numHiddenLayers);
    try {
      let at = 0;
      for (const n of [4, 1, 1, 3, 1]) {
        const step = model.forward({ inputIds: all.narrow(1, at, n), attentionMask: mask.narrow(1, 0, at + n), pastKeyValues: cache });
        assert.equal(step.pastKeyValues, cache);
        at += n;
        assert.equal(cache.length, at);
        // Row 1 is all tokens; row 0's first two slots are padding (their queries mean nothing).
        for (const [row, from] of [[1, at - n], [0, Math.max(at - n, 2)]] as const) {
          if (from >= at) continue;
          const got = step.logits.select(0, row).narrow(0, from - (at - n), at - from);
          const d = maxDiff(got, full.select(0, row).narrow(0, from, at - from));
          assert.ok(d <= 1e-5, `row ${row}, positions ${from}..${at - 1}: max |Δ| ${d}`);
        }
      }
    } finally {
      cache.dispose();
    }
    // Without a mask: useCache creates the cache, then single tokens follow.
    const plain = ids([rows[1]!]);
    const want = model.forward({ inputIds: plain }).logits;
    const first = model.forward({ inputIds: plain.narrow(1, 0, 6), useCache: true });
    const c = first.pastKeyValues!;
    try {
      for (let t = 6; t < 10; t++) {
        const l = model.forward({ inputIds: plain.narrow(1, t, 1), pastKeyValues: c }).logits;
        assert.ok(maxDiff(l, want.narrow(1, t, 1)) <= 1e-5, `token ${t}`);
      }
    } finally {
      c.dispose();
    }
  }));
});

test("KV cache tensors outlive torch.scope and are freed by dispose()", () => {
  const model = newModel();
  const before = torch.memory().tensors;
  const cache = torch.noGrad(() => torch.scope(() => model.forward({ inputIds: ids([[1, 2, 3]]), useCache: true }).pastKeyValues!));
  assert.equal(cache.length, 3);
  torch.noGrad(() => torch.scope(() => {
    model.forward({ inputIds: ids([[4]]), pastKeyValues: cache });
  }));
  assert.equal(cache.length, 4);
  assert.equal(torch.memory().tensors, before + 2 * tiny.numHiddenLayers, "one key and one value tensor per layer");
  cache.dispose();
  assert.equal(torch.memory().tensors, before);
  assert.throws(() => torch.noGrad(() => torch.scope(() => {
    model.forward({ inputIds: ids([[5]]), pastKeyValues: cache });
  })), /the cache was disposed/);
});

test("precomputed positionEmbeddings replace positionIds (the hook for multimodal RoPE)", () => {
  const model = newModel();
  torch.noGrad(() => torch.scope(() => {
    const x = ids([[3, 4, 5, 6], [7, 8, 9, 10]]);
    const pos = ids([[0, 1, 2, 3], [5, 6, 7, 8]]);
    const viaIds = model.forward({ inputIds: x, positionIds: pos }).logits;
    const rope = rotaryEmbeddings(pos, tiny.headDim, tiny.ropeTheta, "float32");
    assert.deepEqual(rope.cos.shape, [2, 4, tiny.headDim]);
    const viaTables = model.forward({ inputIds: x, positionEmbeddings: rope }).logits;
    assert.equal(maxDiff(viaIds, viaTables), 0);
    const spread = model.forward({ inputIds: x, positionEmbeddings: rotaryEmbeddings(pos.mul(3), tiny.headDim, tiny.ropeTheta, "float32") }).logits;
    assert.ok(maxDiff(spread, viaIds) > 1e-3, "other relative positions give other logits");
    // Relative positions are what RoPE encodes: shifting every position barely matters.
    const shiftedAll = model.forward({ inputIds: x.narrow(0, 0, 1), positionIds: pos.narrow(0, 0, 1).add(11) }).logits;
    assert.ok(maxDiff(shiftedAll, viaIds.narrow(0, 0, 1)) <= 1e-4);
  }));
});

test("position ids from a left-padded mask follow HF's generate (cumsum − 1, 1 at padding)", () => {
  torch.scope(() => {
    const pos = positionIdsFromMask(ids([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]), 5);
    assert.deepEqual(pos.tolist(), [[1, 1, 0, 1, 2], [0, 1, 2, 3, 4]]);
    assert.deepEqual(positionIdsFromMask(ids([[0, 1, 1, 1]]), 1).tolist(), [[2]]);
  });
});

test("golden: logits match HF's Qwen2 (plain PyTorch 1.13) within 1e-4, loading the fixture as a checkpoint", () => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  if (meta.config === undefined) assert.fail(`${GOLDEN}: __metadata__ has no "config"; ${REGENERATE}`);
  const dir = tmp();
  try {
    const data = new Set(["input_ids", "attention_mask", "position_ids", "logits", "last_hidden_state"]);
    const weights = new Map([...fixture].filter(([k]) => !data.has(k)));
    writeFileSync(join(dir, "config.json"), meta.config);
    io.saveFile(join(dir, "model.safetensors"), weights);
    const model = Qwen2ForCausalLM.fromPretrained(dir).eval();
    const get = (k: string) => fixture.get(k) ?? assert.fail(`${GOLDEN} has no tensor "${k}"; ${REGENERATE}`);
    const mask = get("attention_mask");
    torch.noGrad(() => torch.scope(() => {
      // Positions are derived from the mask here, as the fixture's were by HF's rule.
      assert.deepEqual(positionIdsFromMask(mask, mask.shape[1]!).tolist(), get("position_ids").tolist());
      const out = model.forward({ inputIds: get("input_ids"), attentionMask: mask });
      const [B, T] = mask.shape as [number, number];
      const m = mask.toFloat64Values();
      let worst = 0;
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          if (m[b * T + t] === 0) continue; // padded queries: no meaning, checked finite below
          const at = (x: Tensor) => x.select(0, b).select(0, t);
          worst = Math.max(worst, maxDiff(at(out.logits), at(get("logits"))), maxDiff(at(out.lastHiddenState), at(get("last_hidden_state"))));
        }
      }
      assert.ok(worst <= 1e-4, `max |Δ| ${worst} at real positions`);
      assert.equal(out.logits.isfinite().all().item(), 1);
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const t of fixture.values()) t.dispose();
  }
});

test("gradients: loss.backward() reaches every parameter (untied and tied)", () => {
  for (const tie of [false, true]) {
    const model = newModel(resolveQwen2({ ...QWEN2_PRESETS.tiny!.config, tieWordEmbeddings: tie })).train();
    torch.scope(() => {
      const x = torch.randint(0, tiny.vocabSize, [2, 6], { generator: new torch.Generator(1) });
      const logits = model.forward({ inputIds: x, attentionMask: ids([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) }).logits;
      F.crossEntropy(logits.view(-1, tiny.vocabSize), x.roll(-1, 1).view(-1)).backward();
      for (const [name, p] of model.namedParameters()) {
        const g = p.grad;
        assert.ok(g !== null, `${name} (tie ${tie}) has no gradient`);
        assert.ok(g.abs().sum().item() > 0, `${name} (tie ${tie}) has an all-zero gradient`);
      }
    });
    model.zeroGrad();
  }
});

/** Same names and bit-identical tensors. */
function sameWeights(a: Qwen2ForCausalLM, b: Qwen2ForCausalLM): void {
  const sa = a.stateDict(), sb = b.stateDict();
  assert.deepEqual([...sb.keys()].sort(), [...sa.keys()].sort());
  for (const [k, t] of sa) assert.equal(maxDiff(t, sb.get(k)!), 0, k);
}

test("savePretrained → fromPretrained is the identity: single file, sharded, tied and untied", () => {
  for (const tie of [false, true]) {
    for (const maxShardBytes of [undefined, 4096]) {
      const model = newModel(resolveQwen2({ ...QWEN2_PRESETS.tiny!.config, tieWordEmbeddings: tie }), 3);
      const dir = tmp();
      try {
        model.savePretrained(dir, maxShardBytes ? { maxShardBytes } : {});
        const files = readdirSync(dir);
        if (maxShardBytes) {
          assert.ok(existsSync(join(dir, "model.safetensors.index.json")));
          assert.ok(files.filter((f) => f.endsWith(".safetensors")).length > 2, `shards: ${files.join(", ")}`);
        } else {
          assert.ok(files.includes("model.safetensors"));
        }
        const names = [...io.loadSharded(dir).entries()].map(([k, t]) => (t.dispose(), k));
        assert.equal(names.includes("lm_head.weight"), !tie, "a tied lm_head is not saved (as HF)");
        const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
        assert.equal(config.tie_word_embeddings, tie);
        assert.equal(config.model_type, "qwen2");

        const loaded = Qwen2ForCausalLM.fromPretrained(dir).eval();
        sameWeights(model, loaded);
        assert.equal(loaded.lm_head.weight === loaded.model.embed_tokens.weight, tie, "tied weights are one Parameter");
        torch.noGrad(() => torch.scope(() => {
          const x = ids([[1, 2, 3, 4]]);
          assert.equal(maxDiff(model.forward({ inputIds: x }).logits, loaded.forward({ inputIds: x }).logits), 0);
        }));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
});

test("fromPretrained converts to the requested dtype; a bf16 checkpoint loads as float32", () => {
  const model = newModel();
  const dir = tmp();
  try {
    model.savePretrained(dir, { dtype: "bfloat16" });
    assert.equal(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).torch_dtype, "bfloat16");
    const f32 = Qwen2ForCausalLM.fromPretrained(dir);
    assert.equal(f32.model.norm.weight.dtype, "float32");
    const bf16 = Qwen2ForCausalLM.fromPretrained(dir, { dtype: "bfloat16" }).eval();
    for (const p of bf16.parameters()) assert.equal(p.dtype, "bfloat16");
    torch.noGrad(() => torch.scope(() => {
      const x = ids([[0, 0, 5, 6, 7]]), mask = ids([[0, 0, 1, 1, 1]]);
      const lo = bf16.forward({ inputIds: x, attentionMask: mask }).logits;
      assert.equal(lo.dtype, "bfloat16");
      const hi = f32.eval().forward({ inputIds: x, attentionMask: mask }).logits;
      assert.ok(maxDiff(lo.float().narrow(1, 2, 3), hi.narrow(1, 2, 3)) < 0.05, "bf16 forward close to float32 on the same weights");
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("fromPretrained: missing, unexpected and mis-shaped weights are one error naming each", () => {
  const model = newModel();
  const dir = tmp();
  try {
    model.savePretrained(dir);
    const sd = io.loadFile(join(dir, "model.safetensors"));
    sd.get("model.layers.1.mlp.up_proj.weight")!.dispose();
    sd.delete("model.layers.1.mlp.up_proj.weight");
    sd.set("model.layers.0.self_attn.q_norm.weight", torch.ones([4]));
    sd.set("model.layers.1.self_attn.rotary_emb.inv_freq", torch.ones([4])); // skipped, as HF does
    sd.set("model.norm.weight", torch.ones([tiny.hiddenSize + 1]));
    io.saveFile(join(dir, "model.safetensors"), sd);
    assert.throws(() => Qwen2ForCausalLM.fromPretrained(dir), (e: Error) => {
      assert.match(e.message, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
      assert.match(e.message, /missing keys \(1\): model\.layers\.1\.mlp\.up_proj\.weight/);
      assert.match(e.message, /unexpected keys \(1\): model\.layers\.0\.self_attn\.q_norm\.weight/);
      assert.match(e.message, /shape mismatch for model\.norm\.weight: model has \[32\], checkpoint has \[33\]/);
      return true;
    });
    for (const t of sd.values()) t.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("fromHfConfig/toHfConfig round-trip every preset, and read a real Qwen2.5 config.json", () => {
  for (const name of Object.keys(QWEN2_PRESETS)) {
    const cfg = qwen2Preset(name);
    assert.deepEqual(fromHfConfig(toHfConfig(cfg)), cfg, name);
  }
  // Qwen/Qwen2.5-0.5B config.json as published.
  const hf = {
    architectures: ["Qwen2ForCausalLM"], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: "silu",
    hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 24,
    model_type: "qwen2", num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6,
    rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true, torch_dtype: "bfloat16",
    transformers_version: "4.40.1", use_cache: true, use_mrope: false, use_sliding_window: false, vocab_size: 151936,
  };
  const cfg = fromHfConfig(hf);
  assert.deepEqual(cfg, qwen2Preset("qwen2.5-0.5b"));
  assert.equal(cfg.headDim, 64);
  const back = toHfConfig(cfg);
  for (const [k, v] of Object.entries(hf)) if (!["transformers_version", "use_mrope"].includes(k)) assert.deepEqual(back[k], v, k);
  // Defaults as HF's: num_key_value_heads falls back to num_attention_heads; eos lists are kept.
  const minimal = fromHfConfig({ vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, eos_token_id: [3, 4] });
  assert.equal(minimal.numKeyValueHeads, 2);
  assert.equal(minimal.ropeTheta, 10000);
  assert.deepEqual(minimal.eosTokenId, [3, 4]);
});

test("config errors name the field", () => {
  const base = toHfConfig(tiny);
  const bad = (patch: Record<string, unknown>, field: RegExp) =>
    assert.throws(() => fromHfConfig({ ...base, ...patch }, "ckpt/config.json"), (e: Error) => e instanceof ConfigError && field.test(e.message) && e.message.startsWith("ckpt/config.json"));
  bad({ hidden_size: undefined }, /missing required field "hidden_size"/);
  bad({ hidden_size: 30 }, /"hidden_size": 30 is not divisible by the number of attention heads 4/);
  bad({ num_key_value_heads: 3 }, /"num_key_value_heads": 3 must divide/);
  bad({ hidden_act: "gelu" }, /"hidden_act": must be "silu"/);
  bad({ model_type: "llama" }, /"model_type": expected "qwen2"/);
  bad({ rope_scaling: { type: "yarn", factor: 4 } }, /"rope_scaling".*not supported/);
  bad({ use_sliding_window: true }, /"use_sliding_window": sliding-window attention is not implemented/);
  bad({ vocab_size: 1.5 }, /field "vocab_size" must be an integer/);
  bad({ torch_dtype: "int8" }, /"torch_dtype": must be one of/);
  bad({ head_dim: 16 }, /"head_dim": 16 differs/);
  assert.throws(() => resolveQwen2({ hiddenSize: 32, numAttentionHeads: 4, hidenSize: 3 } as never), /qwen2\.hidenSize: unknown Qwen2 config field/);
  assert.throws(() => resolveQwen2({ ...QWEN2_PRESETS.tiny!.config, rmsNormEps: 0 }), /qwen2\.rmsNormEps: must be a positive number/);
  assert.throws(() => qwen2Preset("qwen2.5-05b"), /unknown Qwen2 preset "qwen2\.5-05b" — did you mean "qwen2\.5-0\.5b"\?/);
});
