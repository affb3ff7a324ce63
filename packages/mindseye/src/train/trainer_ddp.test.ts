// The trainer under DDP in real processes: two ranks over Gloo started by `mindseye launch`
// (trainer_child.ts on each), against one process with twice the per-rank batch; a SIGTERM to the
// launcher; a rank SIGKILLed. Each test acts when a rank prints that it reached a step, and is
// bounded in time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { tempRun } from "./test_helpers.js";
import { freePort } from "@mindseye/torch/testing";

const CHILD = fileURLToPath(new URL("./trainer_child.js", import.meta.url));
const MAIN = fileURLToPath(new URL("../cli/main.js", import.meta.url));


interface Run { code: number | null; out: string; err: string; ms: number }

/**
 * Runs argv (node + args) with env; `onOut(stdoutSoFar, pid)` sees stdout as it grows. Killed after
 * killAfterMs so that a hang fails the test instead of stalling it.
 */
function run(args: string[], env: NodeJS.ProcessEnv, onOut?: (out: string, pid: number) => void, killAfterMs = 60_000): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { env: { ...process.env, MINDSEYE_NUM_THREADS: "1", MINDSEYE_BLAS_THREADS: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    p.stdout.on("data", (d: Buffer) => { out += d.toString(); onOut?.(out, p.pid!); });
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), killAfterMs);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, ms: Date.now() - t0 });
    });
  });
}

/** `mindseye launch --nproc-per-node 2` of trainer_child.ts with these arguments. */
async function launch2(args: Record<string, unknown>, onOut?: (out: string, pid: number) => void): Promise<Run> {
  const port = await freePort();
  return run([MAIN, "launch", "--nproc-per-node", "2", "--master-port", String(port), "--grace-ms", "20000", "--command", "--", process.execPath, CHILD, JSON.stringify(args)], {}, onOut);
}

const child = (args: Record<string, unknown>, env: NodeJS.ProcessEnv = {}, onOut?: (out: string, pid: number) => void) => run([CHILD, JSON.stringify(args)], env, onOut);

interface Result { steps: number; interrupted: boolean; signal: string | null; losses: number[]; checkpoint: string }
const results = (out: string): Result[] => [...out.matchAll(/^(?:rank (\d) )?result (.*)$/gm)].sort((a, b) => Number(a[1] ?? 0) - Number(b[1] ?? 0)).map((m) => JSON.parse(m[2]!) as Result);

/**
 * Largest |a - b| over every tensor of two safetensors files (same names). The key bias (the
 * middle third of qkv.bias) is reported apart: softmax ignores it, so its gradient is zero up to
 * rounding, and AdamW scales that rounding noise (any summation order gives other noise) to steps
 * of up to lr. Its difference measures float noise, not DDP.
 */
function maxDiff(a: string, b: string): { weights: number; keyBias: number } {
  const x = io.loadFile(a), y = io.loadFile(b);
  try {
    assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort());
    const diff = (k: string, f: (t: Tensor) => Tensor = (t) => t) => torch.scope(() => f(x.get(k)!).sub(f(y.get(k)!)).abs().amax().item());
    const w = 16; // CFG.width
    const notKey = (t: Tensor) => t.numel() === 3 * w ? torch.cat([t.narrow(0, 0, w), t.narrow(0, 2 * w, w)]) : t;
    return {
      weights: Math.max(...[...x.keys()].map((k) => diff(k, k.endsWith("qkv.bias") ? notKey : undefined))),
      keyBias: Math.max(0, ...[...x.keys()].filter((k) => k.endsWith("qkv.bias")).map((k) => diff(k, (t) => t.narrow(0, w, w)))),
    };
  } finally {
    for (const t of [...x.values(), ...y.values()]) t.dispose();
  }
}
const weights = (dir: string, step: number) => join(dir, "checkpoints", `step-${String(step).padStart(6, "0")}`, "model.safetensors");

const STEPS = 20;
// 64 records: one process with batch 8 and 2 micro-batches per step; two ranks with batch 4 each.
const base = { steps: STEPS, checkpointEvery: 1000, gradAccum: 2, distTimeoutMs: 20_000 };

test("2 ranks × batch 4 (launch, Gloo, 2 micro-batches) train to the same losses and weights as 1 process × batch 8", { timeout: 90_000 }, async (t) => {
  const one = tempRun(), two = tempRun();
  try {
    const single = await child({ ...base, runDir: one, batchSize: 8 });
    assert.equal(single.code, 0, single.err);
    const ddp = await launch2({ ...base, runDir: two, batchSize: 4 });
    assert.equal(ddp.code, 0, ddp.err);
    const [r0, r1] = results(ddp.out), [s] = results(single.out);
    assert.ok(r0 && r1 && s, ddp.out);
    assert.deepEqual(r0.losses, r1.losses, "every rank logs the same (averaged) losses");
    const lossErr = Math.max(...s!.losses.map((l, i) => Math.abs(l - r0.losses[i]!)));
    const d = maxDiff(weights(one, STEPS), weights(two, STEPS));
    t.diagnostic(`after ${STEPS} AdamW steps: max |Δloss| ${lossErr.toExponential(2)}, max |Δweight| ${d.weights.toExponential(2)} (the key bias, zero gradient up to rounding: ${d.keyBias.toExponential(2)})`);
    assert.ok(lossErr < 1e-5, `losses differ by ${lossErr}`);
    assert.ok(d.weights < 1e-5, `weights differ by ${d.weights}`);
    // rank 0 alone writes the run folder: one metrics line per step, one checkpoint
    assert.equal(readFileSync(join(two, "metrics.jsonl"), "utf8").trim().split("\n").length, STEPS);
    assert.deepEqual(readdirSync(join(two, "checkpoints")).sort(), ["latest", `step-${String(STEPS).padStart(6, "0")}`]);
    const state = JSON.parse(readFileSync(join(two, "checkpoints", `step-${String(STEPS).padStart(6, "0")}`, "trainer.json"), "utf8")) as { fingerprint: { worldSize: number }; rankRngs: string[] };
    assert.equal(state.fingerprint.worldSize, 2);
    assert.equal(state.rankRngs.length, 2);
  } finally {
    rmSync(one, { recursive: true, force: true });
    rmSync(two, { recursive: true, force: true });
  }
});

test("SIGTERM to the launcher stops both ranks after the same step with one checkpoint, exit 143; rerunning resumes to the uninterrupted weights", { timeout: 120_000 }, async (t) => {
  const dir = tempRun(), ref = tempRun();
  try {
    let sent = false;
    const stopped = await launch2({ ...base, runDir: dir, batchSize: 4 }, (out, launcher) => {
      if (!sent && /^rank 0 step 3$/m.test(out) && /^rank 1 step 3$/m.test(out)) {
        sent = true;
        process.kill(launcher, "SIGTERM");
      }
    });
    assert.equal(stopped.code, 143, stopped.err);
    const [a, b] = results(stopped.out);
    assert.ok(a && b, stopped.out);
    assert.ok(a.interrupted && b.interrupted && a.signal === "SIGTERM" && b.signal === "SIGTERM");
    assert.equal(a.steps, b.steps, "both ranks stop after the same step");
    assert.ok(a.steps >= 3 && a.steps < STEPS, `stopped at ${a.steps}`);
    assert.deepEqual(readdirSync(join(dir, "checkpoints")).sort(), ["latest", `step-${String(a.steps).padStart(6, "0")}`], "one checkpoint, of the step they stopped after");
    assert.match(stopped.err, /To resume, run the same command again/);

    const resumed = await launch2({ ...base, runDir: dir, batchSize: 4, resume: true });
    assert.equal(resumed.code, 0, resumed.err);
    assert.equal(results(resumed.out)[0]!.steps, STEPS);
    const straight = await launch2({ ...base, runDir: ref, batchSize: 4 });
    assert.equal(straight.code, 0, straight.err);
    const { weights: w, keyBias } = maxDiff(weights(dir, STEPS), weights(ref, STEPS));
    const err = Math.max(w, keyBias); // the same computation in the same order: exact
    t.diagnostic(`stopped at step ${a.steps}; resumed vs uninterrupted: max |Δweight| ${err.toExponential(2)}`);
    assert.ok(err < 1e-6, `resumed weights differ by ${err}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(ref, { recursive: true, force: true });
  }
});

test("a rank SIGKILLed mid-run: the other exits non-zero with a clear message within the timeout", { timeout: 90_000 }, async () => {
  const dir = tempRun();
  try {
    const port = String(await freePort());
    const env = (rank: number) => ({ RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: "2", MASTER_ADDR: "127.0.0.1", MASTER_PORT: port });
    const args = { ...base, steps: 100_000, runDir: dir, batchSize: 4, distTimeoutMs: 15_000 };
    let killed = 0;
    const t0 = Date.now();
    const [r0, r1] = await Promise.all([
      child(args, env(0)),
      child(args, env(1), (out, pid) => {
        if (killed === 0 && /^rank 1 step 3$/m.test(out)) {
          killed = Date.now();
          process.kill(pid, "SIGKILL");
        }
      }),
    ]);
    assert.equal(r1.code, null, "rank 1 was killed");
    assert.notEqual(r0.code, 0, r0.err);
    assert.match(r0.err, /rank 0 of 2: .* failed/);
    assert.match(r0.err, /Another rank died, was stopped, or waited longer than the process group's timeout/);
    assert.match(r0.err, /rerun the same launch command to resume/);
    const waited = t0 + r0.ms - killed;
    assert.ok(waited < 30_000, `rank 0 took ${waited} ms to fail`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
