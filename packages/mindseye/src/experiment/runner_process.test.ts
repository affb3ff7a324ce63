// `mindseye experiment` in a real process: a real SIGTERM stops the study during a training
// stage with that stage's checkpoint saved and exit code 143; the same command then resumes it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const main = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");

const study = (out: string, encoderSteps: number, finetune = "finetune: { train: { steps: 2, batch_size: 8 } }\nfractions: [1]") => `
name: signal
out: ${out}
world: { scenes: 30, size: 32, latents: 4 }
world_encoder:
  encoder: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, patch_size: 16 }
  train: { steps: ${encoderSteps}, batch_size: 8, checkpoint_every: 100000, log_every: 1 }
vlm_base: { lm: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, kv_heads: 1 }, train: { steps: 2, batch_size: 8 } }
latent_pretrain: { pool: "grid:4", train: { steps: 2, batch_size: 8 } }
${finetune}
seeds: [0]
eval: { tasks: [world_gqa], splits: [test], limit: 4, batch_size: 4 }
`;

/** Runs the study in a child; `poll` is called every 50 ms with a way to signal it. */
function runExperiment(config: string, poll?: (kill: (s: NodeJS.Signals) => void) => void, args: string[] = []): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, MINDSEYE_NUM_THREADS: "1", MINDSEYE_BLAS_THREADS: "1" };
    const child = spawn(process.execPath, [main, "experiment", "--config", config, ...args], { env });
    let output = "";
    const take = (d: Buffer) => { output += d.toString(); };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    const timer = poll ? setInterval(() => poll((s) => child.kill(s)), 50) : null;
    child.on("close", (code) => {
      if (timer) clearInterval(timer);
      resolve({ code, output });
    });
  });
}

test("SIGTERM stops `mindseye experiment` during a stage with a checkpoint and exit 143; rerunning resumes", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-signal-"));
  try {
    const out = join(root, "study"), config = join(root, "study.yaml");
    writeFileSync(config, study(out, 1500));
    let sent = false;
    const metrics = join(out, "stages", "world-encoder", "metrics.jsonl");
    const first = await runExperiment(config, (kill) => {
      // Once the encoder has logged a step, the stage is training: stop it.
      if (!sent && existsSync(metrics)) {
        sent = true;
        kill("SIGTERM");
      }
    });
    assert.equal(first.code, 143, first.output);
    assert.match(first.output, /interrupted/);
    const checkpoints = readdirSync(join(out, "stages", "world-encoder", "checkpoints")).filter((d) => d.startsWith("step-"));
    assert.equal(checkpoints.length, 1, "the stage saved where it stopped");
    assert.ok(!existsSync(join(out, "results.json")), "the study did not run on");

    const second = await runExperiment(config);
    assert.equal(second.code, 0, second.output);
    assert.match(second.output, /\[skip\] world/);
    assert.ok(existsSync(join(out, "results.json")));
    const steps = readFileSync(metrics, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(steps, Array.from({ length: 1500 }, (_, i) => i + 1), "the encoder resumed where it stopped: every step logged once");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("--jobs 2 runs the fine-tunes in worker processes: SIGTERM stops them with checkpoints and exit 143; the resumed study equals --jobs 1's", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-jobs-"));
  try {
    const finetune = "finetune: { train: { steps: 300, batch_size: 8, checkpoint_every: 100000, log_every: 1 } }\nfractions: [0.5, 1]";
    const [parallel, serial] = [join(root, "parallel"), join(root, "serial")];
    writeFileSync(join(root, "parallel.yaml"), study(parallel, 2, finetune));
    writeFileSync(join(root, "serial.yaml"), study(serial, 2, finetune));
    const finetunes = join(parallel, "finetune");
    const training = () => existsSync(finetunes) && readdirSync(finetunes, { recursive: true }).some((f) => String(f).endsWith("metrics.jsonl"));
    let sent = false;
    const first = await runExperiment(join(root, "parallel.yaml"), (kill) => {
      if (!sent && training()) {
        sent = true;
        kill("SIGTERM");
      }
    }, ["--jobs", "2"]);
    assert.equal(first.code, 143, first.output);
    assert.match(first.output, /stopped/);
    const saved = readdirSync(finetunes, { recursive: true }).filter((f) => /checkpoints[/\\]step-\d+$/.test(String(f)));
    assert.ok(saved.length >= 1, `a stopped fine-tune saved its checkpoint:\n${first.output}`);
    assert.ok(!existsSync(join(parallel, "results.json")), "the study did not run on");

    const second = await runExperiment(join(root, "parallel.yaml"), undefined, ["--jobs", "2"]);
    assert.equal(second.code, 0, second.output);
    const third = await runExperiment(join(root, "serial.yaml"), undefined, ["--jobs", "1"]);
    assert.equal(third.code, 0, third.output);
    const results = (dir: string) => JSON.parse(readFileSync(join(dir, "results.json"), "utf8")) as { cells: unknown[]; controls: unknown[] };
    assert.equal(results(parallel).cells.length, 3 * 2, "3 arms × 2 fractions");
    assert.deepEqual(results(parallel).cells, results(serial).cells, "the same evaluations, in the same order, with the same answers");
    assert.deepEqual(results(parallel).controls, results(serial).controls, "the same blind and fraction controls");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
