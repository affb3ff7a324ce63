// Shared by pretrained_memory.test.ts and bench/load.ts: a Qwen2.5-VL-7B-shaped checkpoint (the
// real config.json, cut to a few layers) written as bf16 shards with an index, and a loader run in
// a child process that reports its peak resident memory (VmHWM) before and after fromPretrained.
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { io, torch, type Tensor } from "@mindseye/torch";
import type { HfJson } from "../config/hf.js";
import { Qwen2_5_VLForConditionalGeneration, qwen2_5_vlFromHfConfig } from "./qwen2_5_vl.js";

/**
 * Qwen/Qwen2.5-VL-7B-Instruct's config.json (shared/reference/formats.md §3.1), with the layer
 * counts as arguments, and for quick tests a `narrow` that divides the language model's widths and
 * head counts (head_dim stays 128; the vocabulary, token ids and vision tower stay real). fullatt_block_indexes must name blocks that exist: the real [7, 15, 23, 31]
 * (every 8th block, the last included) becomes the last block of a shorter tower.
 */
export function qwen2_5_vl7bConfigJson(numHiddenLayers: number, visionDepth: number, narrow = 1): HfJson {
  const n = (x: number) => {
    if (x % narrow !== 0) throw new RangeError(`narrow ${narrow} does not divide ${x}`);
    return x / narrow;
  };
  return {
    architectures: ["Qwen2_5_VLForConditionalGeneration"], model_type: "qwen2_5_vl", torch_dtype: "bfloat16",
    hidden_size: n(3584), intermediate_size: n(18944), num_hidden_layers: numHiddenLayers, num_attention_heads: n(28), num_key_value_heads: n(4),
    hidden_act: "silu", rms_norm_eps: 1e-6, rope_theta: 1000000.0, rope_scaling: { type: "mrope", mrope_section: [16, 24, 24] },
    max_position_embeddings: 128000, vocab_size: 152064, tie_word_embeddings: false,
    sliding_window: 32768, use_sliding_window: false, max_window_layers: 28, attention_dropout: 0.0, initializer_range: 0.02,
    bos_token_id: 151643, eos_token_id: 151645, vision_start_token_id: 151652, vision_end_token_id: 151653,
    vision_token_id: 151654, image_token_id: 151655, video_token_id: 151656,
    vision_config: {
      depth: visionDepth, hidden_size: 1280, intermediate_size: 3420, num_heads: 16, in_chans: 3, out_hidden_size: n(3584),
      patch_size: 14, spatial_patch_size: 14, temporal_patch_size: 2, spatial_merge_size: 2, window_size: 112,
      fullatt_block_indexes: [visionDepth - 1], hidden_act: "silu", tokens_per_second: 2,
    },
  };
}

/** What a written checkpoint holds, to check a load against. */
export interface WrittenCheckpoint {
  /** Bytes of all .safetensors shards together (headers included). */
  fileBytes: number;
  shards: number;
  /** Sum (in float64) of a few tensors rounded to bf16, by checkpoint name: a bf16 load must reproduce them exactly. */
  sums: Record<string, number>;
}

/** The tensors whose sums are compared: the largest ones and a small one from each tower. */
export const CHECKED_TENSORS = ["model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.down_proj.weight", "visual.blocks.0.attn.qkv.weight"];

/**
 * Writes a random Qwen2.5-VL-7B-shaped checkpoint (bf16 unless `dtype` says float32) into `dir` under the original release's
 * names (model.*, visual.*, lm_head), sharded at `maxShardBytes` with model.safetensors.index.json.
 */
export function writeQwen2_5_VL7bShaped(dir: string, o: { numHiddenLayers: number; visionDepth: number; narrow?: number; maxShardBytes: number; dtype?: "bfloat16" | "float32"; seed?: number }): WrittenCheckpoint {
  mkdirSync(dir, { recursive: true });
  const json = qwen2_5_vl7bConfigJson(o.numHiddenLayers, o.visionDepth, o.narrow);
  const dtype = o.dtype ?? "bfloat16";
  json.torch_dtype = dtype;
  const model = new Qwen2_5_VLForConditionalGeneration(qwen2_5_vlFromHfConfig(json), { dtype, generator: new torch.Generator(o.seed ?? 0) });
  const original = new Map<string, Tensor>();
  for (const [name, p] of model.stateDict()) original.set(name.replace(/^model\.visual\./, "visual.").replace(/^model\.language_model\./, "model."), p);
  const sums: Record<string, number> = {};
  for (const name of CHECKED_TENSORS) sums[name] = torch.scope(() => tensorSum(original.get(name)!.to({ dtype: "bfloat16" })));
  io.saveSharded(dir, original, { maxShardBytes: o.maxShardBytes, metadata: { format: "pt" } });
  model.parameters().forEach((p) => p.dispose());
  writeFileSync(join(dir, "config.json"), JSON.stringify(json, null, 2));
  const shards = readdirSync(dir).filter((f) => f.endsWith(".safetensors"));
  return { fileBytes: shards.reduce((a, f) => a + statSync(join(dir, f)).size, 0), shards: shards.length, sums };
}

/** A tensor's sum in float64, reduced in row blocks so that no full-size float64 copy is made. */
export function tensorSum(t: Tensor): number {
  return torch.scope(() => {
    const flat = t.reshape(-1);
    const n = flat.numel(), step = 1 << 24;
    let s = 0;
    for (let i = 0; i < n; i += step) s += flat.narrow(0, i, Math.min(step, n - i)).to({ dtype: "float64" }).sum().item();
    return s;
  });
}

/** What the child process measured around one fromPretrained. */
export interface LoadMeasurement {
  /** VmHWM (peak resident set) in bytes after importing the engine and the model code, before loading. */
  baselinePeakBytes: number;
  /** VmHWM after fromPretrained returned. */
  peakBytes: number;
  /** VmRSS after fromPretrained returned (the model resident). */
  rssBytes: number;
  loadSeconds: number;
  /** tensorSum of CHECKED_TENSORS as the loaded model holds them. */
  sums: Record<string, number>;
}

/**
 * Runs `Qwen2_5_VLForConditionalGeneration.fromPretrained(dir, { dtype })` in a fresh node process,
 * so that the peak resident memory belongs to the load alone.
 */
export function measureLoadInChild(dir: string, dtype: "bfloat16" | "float32" = "bfloat16"): LoadMeasurement {
  const model = new URL("./qwen2_5_vl.js", import.meta.url).href;
  const helpers = new URL("./pretrained_memory_test_helpers.js", import.meta.url).href;
  const code = `
    import { readFileSync } from "node:fs";
    import { Qwen2_5_VLForConditionalGeneration } from ${JSON.stringify(model)};
    import { tensorSum, CHECKED_TENSORS } from ${JSON.stringify(helpers)};
    const status = (key) => Number(new RegExp(key + ":\\\\s+(\\\\d+) kB").exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
    const baselinePeakBytes = status("VmHWM");
    const t0 = performance.now();
    const m = Qwen2_5_VLForConditionalGeneration.fromPretrained(${JSON.stringify(dir)}, { dtype: ${JSON.stringify(dtype)} });
    const loadSeconds = (performance.now() - t0) / 1000;
    const peakBytes = status("VmHWM"), rssBytes = status("VmRSS");
    const sd = m.stateDict();
    // original names (visual.*, model.*) to the module's (model.visual.*, model.language_model.*)
    const loaded = (n) => sd.get(n.startsWith("visual.") ? "model." + n : n.startsWith("model.") ? "model.language_model." + n.slice(6) : n);
    const sums = Object.fromEntries(CHECKED_TENSORS.map((n) => [n, tensorSum(loaded(n))]));
    process.stdout.write(JSON.stringify({ baselinePeakBytes, peakBytes, rssBytes, loadSeconds, sums }));
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8", maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`the loading child process failed (exit ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as LoadMeasurement;
}
