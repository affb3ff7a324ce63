// torch.distributed over c10d/Gloo with two real processes on this machine (testing/dist_child.ts
// is one rank), and DDP's equivalence with one process training on the whole batch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { torch, optim, distributed as dist, type Tensor } from "./index.js";
import { ddpBatch, ddpLoss, ddpModel } from "./testing/ddp_fixture.js";
import { freePort } from "./testing/ports.js";

const CHILD = fileURLToPath(new URL("./testing/dist_child.js", import.meta.url));


interface RankResult { rank: number; code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

/** Runs `scenario` on 2 ranks as a launcher would; any rank still running after killAfterMs is killed. */
async function runRanks(scenario: string, opts: Record<string, unknown> = {}, killAfterMs = 30_000): Promise<RankResult[]> {
  const port = await freePort();
  const t0 = Date.now();
  return Promise.all([0, 1].map((rank) => new Promise<RankResult>((resolve) => {
    const env = { ...process.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: "2", MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port), MINDSEYE_NUM_THREADS: "1", MINDSEYE_BLAS_THREADS: "1" };
    const child = spawn(process.execPath, [CHILD, scenario, JSON.stringify(opts)], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ rank, code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  })));
}

function parsed<T>(r: RankResult): T {
  assert.equal(r.code, 0, `rank ${r.rank} exited with ${r.code ?? r.signal}:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as T;
}

test("collectives across 2 processes: all_reduce (sum, avg, max, a strided tensor), all_gather, reduce_scatter, broadcast, barrier", async () => {
  type Out = { rank: number; worldSize: number; sum: number[]; avg: number[]; max: number[]; strided: number[]; gathered: number[][]; scattered: number[]; bcast: number[] };
  const [r0, r1] = (await runRanks("collectives")).map((r) => parsed<Out>(r));
  for (const r of [r0!, r1!]) {
    assert.equal(r.worldSize, 2);
    assert.deepEqual(r.sum, [3, 3, 3]); // 1 + 2
    assert.deepEqual(r.avg, [1.5, 1.5]);
    assert.deepEqual(r.max, [1, 0]); // max(0, 1), max(-0, -1)
    assert.deepEqual(r.strided, [0, 9, 3, 12, 6, 15]); // arange(6).view(2,3).T · (1 + 2)
    assert.deepEqual(r.gathered, [[0, 0], [1, 10]]);
    assert.deepEqual(r.bcast, [6, 6]); // rank 1's 1 + 5
  }
  assert.deepEqual(r0!.scattered, [3, 3]); // inputs[0] on rank 0 and 1: 1 + 2
  assert.deepEqual(r1!.scattered, [23, 23]); // inputs[1]: 11 + 12
});

// One process, the whole batch of 2b per step: what DDP on 2 ranks × b must reproduce.
function referenceRun(steps: number, b: number): Map<string, number[]> {
  const model = ddpModel(100); // rank 0's seed: DDP starts every rank from rank 0's weights
  const opt = new optim.AdamW(model.parameters().filter((p) => p.requiresGrad), { lr: 1e-2, weightDecay: 0.1 });
  for (let s = 0; s < steps; s++) {
    torch.scope(() => {
      const { x, y, flag } = ddpBatch(s, 2 * b);
      ddpLoss(model, x, y, flag).backward();
      opt.step();
      opt.zeroGrad();
    });
  }
  return new Map(model.namedParameters().map(([n, p]) => [n, [...p.toTypedArray()].map(Number)]));
}

function maxAbsDiff(a: Map<string, number[]>, b: Record<string, number[]>): number {
  let worst = 0;
  for (const [name, va] of a) {
    const vb = b[name];
    assert.ok(vb !== undefined && vb.length === va.length, `parameter ${name} is missing or mis-sized`);
    va.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - vb[i]!))));
  }
  return worst;
}

for (const accumulate of [1, 2]) {
  test(`DDP: 2 ranks × batch 4${accumulate > 1 ? ` (2 micro-batches of 2, noSync on the first)` : ""} end 20 AdamW steps where 1 process × batch 8 does (frozen, one-rank and unused parameters)`, async (t) => {
    type Out = { rank: number; numBuckets: number; params: Record<string, number[]> };
    const ranks = runRanks("ddp", { steps: 20, batch: 4, accumulate });
    const ref = referenceRun(20, 4);
    const [r0, r1] = (await ranks).map((r) => parsed<Out>(r));
    assert.ok(r0!.numBuckets > 1, "the test's tiny bucket cap should give several buckets");
    assert.equal(maxAbsDiff(new Map(Object.entries(r0!.params)), r1!.params), 0, "the two replicas differ");
    const err = maxAbsDiff(ref, r0!.params);
    t.diagnostic(`max |Δ| vs one process: ${err.toExponential(2)}`);
    assert.ok(err < 1e-5, `DDP parameters differ from the one-process run by ${err}`);
    // the frozen layer and the layer no sample uses never move; the branch only rank 0 takes does
    const init = new Map(ddpModel(100).namedParameters().map(([n, p]) => [n, [...p.toTypedArray()].map(Number)]));
    for (const name of ["frozen.weight", "frozen.bias", "unused.weight", "unused.bias"]) assert.deepEqual(r0!.params[name], init.get(name), name);
    assert.notDeepEqual(r0!.params["aux.weight"], init.get("aux.weight"));
  });
}

test("DDP refuses ranks whose trainable parameters differ, on every rank, with both counts", async () => {
  const results = (await runRanks("mismatch")).map((r) => parsed<{ error: string | null }>(r));
  for (const r of results) assert.match(r.error ?? "", /rank 1 has 7 trainable parameters \(172 elements\), rank 0 has 8 \(188 elements\)/);
});

test("a rank killed with SIGKILL: the other's next collective throws (rank, op, c10d's message) and it exits non-zero, well within the timeout", async () => {
  const timeoutMs = 10_000;
  const [r0, r1] = await runRanks("die", { timeoutMs }, 3 * timeoutMs);
  assert.equal(r1!.signal, "SIGKILL");
  assert.notEqual(r0!.code, 0);
  assert.equal(r0!.signal, null, "rank 0 should exit with an error, not be killed by the test");
  assert.match(r0!.stderr, /torch\.distributed: all_reduce failed on rank 0 of 2 \(gloo, timeout 10000 ms\): .*(closed|reset|refused)/i);
  assert.ok(r0!.ms < timeoutMs, `rank 0 took ${r0!.ms} ms`);
});

test("a rank that stops taking part: the other's collective times out after timeoutMs with a clear error", async () => {
  const timeoutMs = 4000; // also the rendezvous timeout: long enough for two processes starting on a loaded machine
  const [r0, r1] = await runRanks("stall", { timeoutMs }, 30_000);
  assert.notEqual(r0!.code, 0);
  assert.equal(r0!.signal, null);
  assert.match(r0!.stderr, /torch\.distributed: all_reduce failed on rank 0 of 2 \(gloo, timeout 4000 ms\): .*time/i);
  assert.ok(r0!.ms >= timeoutMs && r0!.ms < timeoutMs + 10_000, `rank 0 took ${r0!.ms} ms`);
  assert.equal(r1!.code, 0);
});

test("initProcessGroup names the missing launcher variable, and a lone rank 0 gives up after the timeout", async () => {
  const saved = { ...process.env };
  try {
    for (const k of ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"]) delete process.env[k];
    assert.throws(() => dist.initProcessGroup(), /rank was not given and RANK is not set/);
    process.env.RANK = "0";
    process.env.WORLD_SIZE = "two";
    assert.throws(() => dist.initProcessGroup(), /WORLD_SIZE=two is not a non-negative integer/);
    assert.throws(() => dist.initProcessGroup({ rank: 2, worldSize: 2, masterAddr: "127.0.0.1", masterPort: 1 }), /rank 2 is outside world size 2/);
    assert.throws(() => dist.initProcessGroup({ backend: "mpi" as "gloo", rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort: 1 }), /backend "mpi" is not in this build, which has gloo/);
    const port = await freePort();
    const t0 = Date.now();
    assert.throws(() => dist.initProcessGroup({ rank: 0, worldSize: 2, masterAddr: "127.0.0.1", masterPort: port, timeoutMs: 1000 }), /rank 0 of 2 could not (join|connect) .*127\.0\.0\.1:\d+ within 1000 ms: .*are all 2 ranks started/);
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal(dist.isInitialized(), false);
  } finally {
    process.env = saved;
  }
});

test("a 1-rank group: collectives are identities, and destroyProcessGroup frees it", async () => {
  const pg = dist.initProcessGroup({ backend: "gloo", rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort: await freePort(), timeoutMs: 5000 });
  try {
    const t: Tensor = torch.tensor([1, 2, 3], { dtype: "float32" });
    assert.deepEqual([...dist.allReduce(t, "avg").toTypedArray()], [1, 2, 3]);
    assert.equal(dist.allGather(t).length, 1);
    assert.equal(dist.getWorldSize(), 1);
    assert.throws(() => dist.initProcessGroup({ rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort: 1 }), /already initialized/);
  } finally {
    dist.destroyProcessGroup();
  }
  assert.throws(() => pg.barrier(), /was destroyed/);
  assert.equal(dist.isInitialized(), false);
});
