// The trainer in real processes (trainer_child.ts): real signals, a real SIGKILL, two real runs
// racing for one folder. Each child trains the tiny task of test_helpers.ts; a test acts when the
// child prints that it reached a step, so nothing here depends on timing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempRun } from "./test_helpers.js";

const CHILD = fileURLToPath(new URL("./trainer_child.js", import.meta.url));

interface Child {
  proc: ChildProcess;
  /** Resolves when stdout (or stderr) has printed a match. */
  stdout(pattern: RegExp): Promise<void>;
  stderr(pattern: RegExp): Promise<void>;
  /** Resolves when the process has ended. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>;
}

function startChild(args: Record<string, unknown>): Child {
  const proc = spawn(process.execPath, [CHILD, JSON.stringify(args)], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  const waiters: { stream: "out" | "err"; pattern: RegExp; resolve: () => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (!w.pattern.test(w.stream === "out" ? out : err)) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  proc.stdout!.on("data", (d: Buffer) => { out += d.toString(); check(); });
  proc.stderr!.on("data", (d: Buffer) => { err += d.toString(); check(); });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((resolve) => {
    proc.on("close", (code, signal) => resolve({ code, signal, out, err }));
  });
  const waitFor = (stream: "out" | "err") => (pattern: RegExp) => new Promise<void>((resolve, reject) => {
    waiters.push({ stream, pattern, resolve });
    check();
    void exit.then((e) => reject(new Error(`the child ended (code ${e.code}, signal ${e.signal}) before printing ${pattern}\nstdout:\n${e.out}\nstderr:\n${e.err}`)));
  });
  return { proc, stdout: waitFor("out"), stderr: waitFor("err"), exit };
}

const latest = (dir: string) => readFileSync(join(dir, "checkpoints", "latest"), "utf8").trim();
const metricSteps = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { step: number }).step);

for (const [signal, code] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
  test(`${signal} to a training process stops it early with a checkpoint; it exits ${code} and says how to resume`, { timeout: 120_000 }, async () => {
    const dir = tempRun();
    try {
      const child = startChild({ runDir: dir, steps: 1000, checkpointEvery: 500 });
      await child.stdout(/^step 3$/m);
      child.proc.kill(signal);
      const e = await child.exit;
      assert.equal(e.code, code, e.err);
      const result = JSON.parse(/^result (.*)$/m.exec(e.out)![1]!) as { steps: number; interrupted: boolean; signal: string };
      assert.ok(result.interrupted && result.signal === signal && result.steps >= 3 && result.steps < 1000, JSON.stringify(result));
      assert.equal(latest(dir), `step-${String(result.steps).padStart(6, "0")}`);
      assert.equal(metricSteps(dir).at(-1), result.steps);
      assert.match(e.err, /To resume, run the same command again/);
      assert.doesNotMatch(e.err, /--resume/);
      assert.ok(!existsSync(join(dir, "train.lock")), "the lock is released");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("a second SIGINT exits at once (here: during an evaluation that never ends)", { timeout: 120_000 }, async () => {
  const dir = tempRun();
  try {
    const child = startChild({ runDir: dir, steps: 1000, checkpointEvery: 500, hangInEval: 2 });
    await child.stdout(/evaluating at step 2/);
    child.proc.kill("SIGINT");
    await child.stderr(/SIGINT: stopping after this step/);
    child.proc.kill("SIGINT");
    const e = await child.exit;
    assert.equal(e.code, 130, e.err);
    assert.match(e.err, /SIGINT again: exiting now/);
    assert.doesNotMatch(e.out, /^result /m);
    assert.ok(!existsSync(join(dir, "checkpoints")), "no checkpoint was written");
    assert.ok(!existsSync(join(dir, "train.lock")), "the lock is released on a forced exit");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("two runs into one folder: the second is refused, naming the first's pid and host; the first's metrics are its own", { timeout: 120_000 }, async () => {
  const dir = tempRun();
  try {
    const first = startChild({ runDir: dir, steps: 1000, checkpointEvery: 500 });
    await first.stdout(/^step 2$/m);
    const second = await startChild({ runDir: dir, steps: 1000, checkpointEvery: 500, resume: true }).exit;
    assert.notEqual(second.code, 0);
    assert.match(second.err, new RegExp(`in use by pid ${first.proc.pid} on ${hostname()}`));
    assert.doesNotMatch(second.out, /^step /m);
    first.proc.kill("SIGTERM");
    const e = await first.exit;
    assert.equal(e.code, 143, e.err);
    const steps = metricSteps(dir);
    assert.deepEqual(steps, Array.from({ length: steps.length }, (_, i) => i + 1), "each step logged once");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a process SIGKILLed between checkpoints resumes to the same loss curve and weights as an uninterrupted run", { timeout: 120_000 }, async () => {
  const full = tempRun(), killed = tempRun();
  const args = { steps: 12, checkpointEvery: 5, noisy: true };
  try {
    const f = await startChild({ ...args, runDir: full }).exit;
    assert.equal(f.code, 0, f.err);

    // Killed after step 7 was logged: the last checkpoint is step 5, and its lock is left behind.
    const k = startChild({ ...args, runDir: killed, blockAt: 8 });
    await k.stdout(/blocking before step 8/);
    k.proc.kill("SIGKILL");
    const ke = await k.exit;
    assert.equal(ke.signal, "SIGKILL");
    assert.equal(latest(killed), "step-000005");
    assert.deepEqual(metricSteps(killed), [1, 2, 3, 4, 5, 6, 7]);
    assert.ok(existsSync(join(killed, "train.lock")));
    mkdirSync(join(killed, "checkpoints", `step-000010.tmp-${k.proc.pid}`)); // as a write the kill interrupted

    const r = await startChild({ ...args, runDir: killed, resume: true }).exit;
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, new RegExp(`took over a stale lock of pid ${k.proc.pid}`));
    assert.match(r.err, new RegExp(`removed step-000010.tmp-${k.proc.pid}`));

    // The loss curve: every logged value but wall-clock ones, bit for bit.
    const rows = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => {
      const { time: _t, samples_per_s: _s, ...row } = JSON.parse(l) as Record<string, unknown>;
      return row;
    });
    assert.deepEqual(rows(killed), rows(full));
    assert.equal(rows(full).length, 12);
    // Weights, optimizer state, RNG and loader cursor at the end.
    for (const file of ["model.safetensors", "optimizer.safetensors"]) {
      assert.ok(readFileSync(join(killed, "checkpoints", "step-000012", file)).equals(readFileSync(join(full, "checkpoints", "step-000012", file))), `${file} identical`);
    }
    const state = (dir: string) => {
      const s = JSON.parse(readFileSync(join(dir, "checkpoints", "step-000012", "trainer.json"), "utf8")) as Record<string, unknown>;
      return [s.rng, s.loader, s.gradNorms];
    };
    assert.deepEqual(state(killed), state(full));
    assert.deepEqual(readdirSync(join(killed, "checkpoints")).sort(), ["latest", "step-000010", "step-000012"]);
  } finally {
    rmSync(full, { recursive: true, force: true });
    rmSync(killed, { recursive: true, force: true });
  }
});
