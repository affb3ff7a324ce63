// Loading checkpoints defensively: config.json is held against the safetensors header before
// anything is allocated, and non-finite weights are refused at load. The absurd-config cases run
// in a child process watched for memory, so that a loader that allocates first is a failed test
// (the child is SIGKILLed past 1 GB), not a machine out of memory.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, io } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { Qwen2ForCausalLM, qwen2Preset } from "./qwen2.js";
import { VitVisionModel, vitPreset } from "./vit.js";
import { readCheckpointHeader } from "./pretrained.js";

let root = "", qwen = "", vit = "";

before(() => {
  root = mkdtempSync(join(tmpdir(), "mindseye-pretrained-"));
  qwen = join(root, "qwen2");
  torch.manualSeed(0);
  const lm = new Qwen2ForCausalLM(qwen2Preset("tiny"));
  lm.savePretrained(qwen);
  lm.parameters().forEach((p) => p.dispose());
  vit = join(root, "vit");
  const tower = new VitVisionModel(vitPreset("siglip-tiny"));
  tower.savePretrained(vit);
  tower.parameters().forEach((p) => p.dispose());
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A copy of checkpoint `src` whose config.json is edited by `edit`. */
function withConfig(src: string, name: string, edit: (c: Record<string, unknown>) => void): string {
  const dir = join(root, name);
  cpSync(src, dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  edit(config);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

/** Resident memory of a process in bytes (Linux /proc), or 0 once it is gone. */
function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Loads each dir with Qwen2ForCausalLM.fromPretrained in a child process and returns the error
 * message of each (or "loaded"). The child is SIGKILLed when its memory passes `limitBytes`.
 */
async function loadInChild(dirs: string[], limitBytes = 1 << 30): Promise<{ messages: string[]; peak: number; killed: boolean }> {
  const qwen2Url = new URL("./qwen2.js", import.meta.url).href;
  const script = `
    const { Qwen2ForCausalLM } = await import(${JSON.stringify(qwen2Url)});
    for (const dir of ${JSON.stringify(dirs)}) {
      try { Qwen2ForCausalLM.fromPretrained(dir); console.log(JSON.stringify("loaded")); }
      catch (e) { console.log(JSON.stringify(e.name + ": " + e.message)); }
    }`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, MINDSEYE_NUM_THREADS: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "", peak = 0, killed = false;
  child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
  child.stderr.on("data", (d: Buffer) => { err += d.toString(); });
  const watch = setInterval(() => {
    const rss = rssBytes(child.pid!);
    peak = Math.max(peak, rss);
    if (rss > limitBytes && !killed) { killed = true; child.kill("SIGKILL"); }
  }, 20);
  const deadline = setTimeout(() => { killed = true; child.kill("SIGKILL"); }, 60_000);
  await new Promise<void>((resolve) => child.on("exit", () => resolve()));
  clearInterval(watch);
  clearTimeout(deadline);
  assert.equal(killed, false, `the loader was killed (memory peaked at ${(peak / 2 ** 20).toFixed(0)} MB past the ${limitBytes / 2 ** 20} MB limit, or it ran past 60 s); stderr: ${err.slice(-2000)}`);
  return { messages: out.trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as string), peak, killed };
}

test("absurd config.json sizes are named by field before anything is allocated (child process, memory watched)", { skip: process.platform !== "linux" && "reads /proc for the child's memory" }, async () => {
  const layers = withConfig(qwen, "layers-1e9", (c) => { c.num_hidden_layers = 1e9; });
  const vocab = withConfig(qwen, "vocab-1e12", (c) => { c.vocab_size = 1e12; });
  const { messages } = await loadInChild([layers, vocab]);
  assert.match(messages[0]!, /^ConfigError: .*layers-1e9\/config\.json: "num_hidden_layers": 1000000000 is beyond any real model \(at most 1024\); the config is broken$/);
  assert.match(messages[1]!, /^ConfigError: .*vocab-1e12\/config\.json: "vocab_size": 1000000000000 is beyond any real model \(at most 4194304\)/);
});

test("config.json is checked against the checkpoint's shapes and layer names, naming the field", () => {
  const three = withConfig(qwen, "layers-3", (c) => { c.num_hidden_layers = 3; });
  assert.throws(() => Qwen2ForCausalLM.fromPretrained(three), (e: unknown) => e instanceof ConfigError
    && /layers-3\/config\.json: field "num_hidden_layers" says 3, but the checkpoint has weights for 2 layers \(model\.layers\.0 … model\.layers\.1\)/.test(e.message)
    && /use the config\.json that came with the weights/.test(e.message));
  const wide = withConfig(qwen, "hidden-64", (c) => { c.hidden_size = 64; });
  assert.throws(() => Qwen2ForCausalLM.fromPretrained(wide), (e: unknown) => e instanceof ConfigError
    && /field "hidden_size" says 64, but the checkpoint's model\.embed_tokens\.weight \(.*hidden-64\/model\.safetensors\) has shape \[99, 32\] \(dimension 1 is 32\)/.test(e.message));
  const kv = withConfig(qwen, "kv-4", (c) => { c.num_key_value_heads = 4; });
  assert.throws(() => Qwen2ForCausalLM.fromPretrained(kv), /field "num_key_value_heads × head_dim \(4 × 8\)" says 32, but the checkpoint's model\.layers\.0\.self_attn\.k_proj\.weight .* has shape \[16, 32\]/);
  const mlp = withConfig(qwen, "mlp", (c) => { c.intermediate_size = 100; });
  assert.throws(() => Qwen2ForCausalLM.fromPretrained(mlp), /field "intermediate_size" says 100, but the checkpoint's model\.layers\.0\.mlp\.gate_proj\.weight/);

  const deep = withConfig(vit, "vit-layers", (c) => { c.num_hidden_layers = 5; });
  assert.throws(() => VitVisionModel.fromPretrained(deep), /field "num_hidden_layers" says 5, but the checkpoint has weights for 2 layers \(vision_model\.encoder\.layers\.0 … vision_model\.encoder\.layers\.1\)/);
  const big = withConfig(vit, "vit-image", (c) => { c.image_size = 32; });
  assert.throws(() => VitVisionModel.fromPretrained(big), /field "\(image_size \/ patch_size\)² = \(32 \/ 4\)²" says 64, but the checkpoint's vision_model\.embeddings\.position_embedding\.weight .* has shape \[16, 32\]/);
  const huge = withConfig(vit, "vit-huge", (c) => { c.image_size = 1e6; });
  assert.throws(() => VitVisionModel.fromPretrained(huge), /imageSize: 1000000 is beyond any real vision tower \(at most 16384\)/);
});

test("a checkpoint with a NaN or infinite weight is refused at load, naming the tensor and the file", () => {
  for (const [src, name, model] of [[qwen, "model.norm.weight", "qwen"], [vit, "vision_model.post_layernorm.weight", "vit"]] as const) {
    const dir = join(root, `nan-${model}`);
    cpSync(src, dir, { recursive: true });
    const file = join(dir, "model.safetensors");
    const weights = io.loadFile(file);
    const t = weights.get(name)!;
    torch.noGrad(() => { t.narrow(0, 0, 2).fill_(Number.NaN); t.narrow(0, 2, 1).fill_(Number.POSITIVE_INFINITY); });
    io.saveFile(file, weights);
    weights.forEach((w) => w.dispose());
    assert.ok(readCheckpointHeader(dir).has(name));
    const load = () => (model === "qwen" ? Qwen2ForCausalLM.fromPretrained(dir) : VitVisionModel.fromPretrained(dir));
    assert.throws(load, new RegExp(`^Error: .*nan-${model}/model\\.safetensors: tensor "${name.replace(/\./g, "\\.")}" holds 3 non-finite values \\(2 NaN, 1 infinite\\) of 32; the checkpoint is broken`));
  }
});
