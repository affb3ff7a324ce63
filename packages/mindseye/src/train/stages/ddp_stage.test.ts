// A stage from its shipped recipe under `mindseye launch` (two real ranks, Gloo): the same
// weights as one process with the two ranks' batches together, written once, by rank 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch } from "@mindseye/torch";
import { generateWorld, resolveWorldOptions } from "../../world/generate.js";
import { VitVisionModel } from "../../models/vit.js";
import { freePort } from "@mindseye/torch/testing";

const MAIN = fileURLToPath(new URL("../../cli/main.js", import.meta.url));
const CONFIGS = fileURLToPath(new URL("../../../../../configs", import.meta.url)); // dist/train/stages -> repo root


/** `mindseye ARGS`, killed after 120 s so a hang fails the test instead of stalling the suite. */
function mindseye(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, MINDSEYE_NUM_THREADS: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test("world-encoder from its recipe on 2 ranks (mindseye launch) equals 1 process with twice the batch; rank 0 alone writes the encoder", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-ddp-stage-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 120, seed: 5, size: 48, latents: 9, workers: 0, log: () => {} }));
    const recipe = join(CONFIGS, "world-encoder.yaml");
    const common = [`world=${world}`, "train.steps=6", "train.warmup_steps=1", "train.log_every=1"];
    const two = await mindseye(["launch", "--nproc-per-node", "2", "--master-port", String(await freePort()), "--", "train", "--config", recipe, "--quiet",
      "--set", ...common, `out=${join(root, "ddp")}`, "train.batch_size=4"]);
    assert.equal(two.code, 0, two.output);
    const one = await mindseye(["train", "--config", recipe, "--quiet", "--set", ...common, `out=${join(root, "single")}`, "train.batch_size=8"]);
    assert.equal(one.code, 0, one.output);
    assert.deepEqual(readdirSync(join(root, "ddp", "encoder")).sort(), readdirSync(join(root, "single", "encoder")).sort());
    torch.scope(() => {
      const a = VitVisionModel.fromPretrained(join(root, "ddp", "encoder")).stateDict();
      const b = VitVisionModel.fromPretrained(join(root, "single", "encoder")).stateDict();
      // The attention's key bias is left out: its true gradient is 0 (softmax ignores a shift
      // shared by all keys), so AdamW turns each run's rounding noise into lr-sized steps.
      let worst = 0, where = "";
      for (const [name, t] of a) {
        if (name.endsWith("k_proj.bias")) continue;
        const d = t.sub(b.get(name)!).abs().amax().item();
        if (d > worst) [worst, where] = [d, name];
      }
      assert.ok(worst < 1e-5, `max |Δweight| ${worst} at ${where}`);
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
