// ZeRO-1 (zero.ts) with two real processes over Gloo: this file starts itself twice as the two
// ranks (`node zero.test.js --rank-child <scenario>`, with torchrun's variables), and each rank
// trains the DDP test model (testing/ddp_fixture.ts) twice, side by side: DDP + plain AdamW and
// DDP + ZeroRedundancyOptimizer(AdamW). Both must end with the same weights, bit for bit: the
// owner of a parameter computes the plain optimizer's update of it, and a broadcast copies bits.
// The stage-2 scenario trains three side by side: one process on the global batch (no
// collectives), DDP + AdamW, and ZeRO-2 (gradients reduce-scattered to their owners), with
// gradient accumulation and clipping; the fixture's frozen layer, its branch only rank 0's first
// micro-batch takes and its layer no sample uses cover the parameters without a gradient.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { torch, nn, optim, distributed as dist, type Tensor } from "../index.js";
import { ddpBatch, ddpLoss, ddpModel, type DdpNet } from "../testing/ddp_fixture.js";
import { partitionParameters, ZeroRedundancyOptimizer } from "./zero.js";
import type { OptimizerState } from "./optimizer.js";
import { freePort } from "../testing/ports.js";

const SELF = fileURLToPath(import.meta.url);
const values = (t: Tensor) => [...t.toTypedArray()].map(Number);

/** Weights with decay, biases without: two groups, so the partition spans groups. */
function groups(m: DdpNet, opts: { weightDecay: number }): optim.GroupSpec<optim.AdamWOptions>[] {
  const trained = m.namedParameters().filter(([, p]) => p.requiresGrad);
  return [
    { params: trained.filter(([n]) => n.endsWith("weight")).map(([, p]) => p), weightDecay: opts.weightDecay },
    { params: trained.filter(([n]) => n.endsWith("bias")).map(([, p]) => p), weightDecay: 0 },
  ];
}

/** Largest |a - b| over two full optimizer states, which must have the same keys, step counts and groups. */
function stateDiff(a: OptimizerState, b: OptimizerState): number {
  assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
  assert.deepEqual(a.meta.steps, b.meta.steps);
  assert.deepEqual(a.meta.groups, b.meta.groups);
  return Math.max(0, ...[...a.tensors].map(([k, t]) => torch.scope(() => t.sub(b.tensors.get(k)!).abs().amax().item())));
}

// ---------------------------------------------------------------------------------------------
// One rank (the child process).
if (process.argv[2] === "--rank-child" && process.argv[3] === "stage2") {
  const opts = JSON.parse(process.argv[4]!) as { steps: number; batch: number; accum: number; clip: number };
  const pg = dist.initProcessGroup({ backend: "gloo", timeoutMs: 20_000 });
  const { rank, worldSize } = pg;
  const lr = { lr: 1e-2, weightDecay: 0.1 };
  const singleModel = ddpModel(100), ddpNet = ddpModel(100 + rank), zeroNet = ddpModel(100 + rank); // DDP broadcasts rank 0's weights (seed 100)
  const ddp = new nn.DistributedDataParallel(ddpNet, { bucketCapMb: 0.001 });
  new nn.DistributedDataParallel(zeroNet); // the broadcast of rank 0's weights; ZeRO-2 reduces the gradients itself
  const single = new optim.AdamW(groups(singleModel, lr), lr);
  const plain = new optim.AdamW(groups(ddpNet, lr), lr);
  const zero = new ZeroRedundancyOptimizer(groups(zeroNet, lr), optim.AdamW, lr, { stage: 2, bucketCapMb: 0.0002 }); // ~200-byte buckets: several rounds
  const gradNumel = (m: DdpNet) => m.parameters().reduce((a, p) => a + (p.grad?.numel() ?? 0), 0);
  // step() before reduceGradients() is refused (on both ranks, before any collective)
  let unreduced = "";
  torch.scope(() => ddpLoss(zeroNet, ...Object.values(ddpBatch(0, 4)) as [Tensor, Tensor, Tensor]).backward());
  try { zero.step(); } catch (e) { unreduced = (e as Error).message; }
  zero.zeroGrad();
  const norms: { single: number; ddp: number; zero: number }[] = [];
  const memory = { ddp: 0, zero: 0, zeroBeforeReduce: 0 };
  const micro = opts.batch / opts.accum;
  for (let s = 0; s < opts.steps; s++) {
    for (const o of [single, plain, zero]) for (const g of o.paramGroups) g.lr = g.initialLr * (1 - s / (2 * opts.steps));
    torch.scope(() => {
      const { x, y, flag } = ddpBatch(s, worldSize * opts.batch); // the global batch
      // 1. one process, the whole batch at once
      ddpLoss(singleModel, x, y, flag).backward();
      const singleNorm = optim.clipGradNorm(singleModel.parameters().filter((p) => p.requiresGrad), opts.clip);
      single.step();
      single.zeroGrad();
      // 2. this rank's rows in `accum` micro-batches: DDP communicates on the last, ZeRO-2 after it
      const rows = (t: Tensor, k: number) => t.narrow(0, rank * opts.batch + k * micro, micro);
      for (let k = 0; k < opts.accum; k++) {
        const lossOf = (m: DdpNet) => ddpLoss(m, rows(x, k), rows(y, k), rows(flag, k)).div(opts.accum);
        if (k < opts.accum - 1) ddp.noSync(() => ddp.backward(lossOf(ddpNet)));
        else ddp.backward(lossOf(ddpNet));
        lossOf(zeroNet).backward();
      }
      memory.ddp = Math.max(memory.ddp, gradNumel(ddpNet));
      memory.zeroBeforeReduce = Math.max(memory.zeroBeforeReduce, gradNumel(zeroNet));
      zero.reduceGradients();
      memory.zero = Math.max(memory.zero, gradNumel(zeroNet));
      const ddpNorm = optim.clipGradNorm(plain.paramGroups.flatMap((g) => g.params), opts.clip); // the same order as ZeRO's: the same sum
      const zeroNorm = zero.clipGradNorm(opts.clip);
      norms.push({ single: singleNorm, ddp: ddpNorm, zero: zeroNorm });
      plain.step();
      plain.zeroGrad();
      zero.step();
      zero.zeroGrad();
    });
  }
  // an evenly divisible list (64, 64, 64, 64, 32, 32: 160 elements each): each rank keeps exactly half of the gradients
  const even = [64, 64, 64, 64, 32, 32].map((n) => torch.ones([n]).requiresGrad_());
  const evenOpt = new ZeroRedundancyOptimizer(even, optim.AdamW, {}, { stage: 2, bucketCapMb: 0.0002 }); // rounds of 64 | 64, 64 | 64, 32 | 32
  for (const p of even) p.grad = torch.full([p.numel()], rank + 1);
  evenOpt.reduceGradients();
  const evenGrads = even.flatMap((p) => (p.grad === null ? [] : values(p.grad)));
  const params = (m: DdpNet) => Object.fromEntries(m.namedParameters().map(([n, p]) => [n, values(p)]));
  process.stdout.write(JSON.stringify({ rank, unreduced, norms, memory, numGradBuckets: [zero.numGradBuckets, evenOpt.numGradBuckets], evenGrads, single: params(singleModel), ddp: params(ddpNet), zero: params(zeroNet) }) + "\n");
  dist.destroyProcessGroup();
} else if (process.argv[2] === "--rank-child") {
  const opts = JSON.parse(process.argv[4] ?? "{}") as { steps: number; batch: number; more: number };
  const pg = dist.initProcessGroup({ backend: "gloo", timeoutMs: 20_000 });
  const { rank, worldSize } = pg;
  const lr = { lr: 1e-2, weightDecay: 0.1 };
  // different seeds per rank: DDP broadcasts rank 0's weights
  const plainModel = ddpModel(100 + rank), zeroModel = ddpModel(100 + rank);
  const plainDdp = new nn.DistributedDataParallel(plainModel, { bucketCapMb: 0.001 });
  const zeroDdp = new nn.DistributedDataParallel(zeroModel, { bucketCapMb: 0.001 });
  const plain = new optim.AdamW(groups(plainModel, lr), lr);
  let zero = new ZeroRedundancyOptimizer(groups(zeroModel, lr), optim.AdamW, lr, { bucketCapMb: 0.0002 }); // ~200-byte buckets: several per rank
  const numel = (s: OptimizerState) => [...s.tensors.values()].reduce((a, t) => a + t.numel(), 0);
  const train = (from: number, to: number) => {
    for (let s = from; s < to; s++) {
      // the lr changes every step, as a schedule would set it: it must reach the inner optimizer
      for (const o of [plain, zero]) for (const g of o.paramGroups) g.lr = g.initialLr * (1 - s / (2 * to));
      for (const [model, ddp, opt] of [[plainModel, plainDdp, plain], [zeroModel, zeroDdp, zero]] as const) {
        torch.scope(() => {
          const { x, y, flag } = ddpBatch(s, worldSize * opts.batch); // the global batch; this rank's rows
          const mine = (t: Tensor) => t.narrow(0, rank * opts.batch, opts.batch);
          ddp.backward(ddpLoss(model, mine(x), mine(y), mine(flag)));
          opt.step();
          opt.zeroGrad();
        });
      }
    }
  };
  train(0, opts.steps);
  const full = plain.stateDict();
  // 1. the shards: state for this rank's partition only
  const owned = zero.partition[rank]!.flat();
  const shard = { local: numel(zero.optim.stateDict()), plain: numel(full), ownedElements: owned.reduce((a, p) => a + p.numel(), 0), ownedParams: owned.length };
  // a list that splits evenly (64, 64, 64, 64, 32, 32 → 160 elements each): half of AdamW's state on each rank
  const even = [64, 64, 64, 64, 32, 32].map((n) => torch.ones([n]).requiresGrad_());
  const evenOpt = new ZeroRedundancyOptimizer(even, optim.AdamW, {});
  for (const p of even) p.grad = torch.ones([p.numel()]);
  evenOpt.step();
  const evenShard = { local: numel(evenOpt.optim.stateDict()), total: 2 * even.reduce((a, p) => a + p.numel(), 0) };
  // 2. consolidated on rank 0, then on rank 1: the plain optimizer's state exactly
  let noState = "";
  try { zero.stateDict(); } catch (e) { noState = (e as Error).message; }
  const consolidated: number[] = [];
  for (const to of [0, 1]) {
    zero.consolidateStateDict(to);
    if (rank === to) consolidated.push(stateDiff(zero.stateDict(), full));
    zero.clearConsolidatedState();
  }
  // 3. a fresh ZeRO optimizer loads the full state (each rank its shard) and trains on as the plain one
  zero = new ZeroRedundancyOptimizer(groups(zeroModel, { weightDecay: 0 }), optim.AdamW, { lr: 1 }, { bucketCapMb: 0.0002 }); // wrong hyperparameters: the state brings them
  // each rank given only the slots it owns (what a checkpoint load reads under ZeRO)
  const ownKeys = [...full.tensors.keys()].filter((k) => zero.ownsStateKey(k));
  zero.loadStateDict({ tensors: new Map(ownKeys.map((k) => [k, full.tensors.get(k)!])), meta: full.meta });
  zero.consolidateStateDict(0);
  const reloaded = rank === 0 ? stateDiff(zero.stateDict(), full) : 0;
  const ownedSlots = { own: ownKeys.length, all: full.tensors.size };
  train(opts.steps, opts.steps + opts.more);
  const params = (m: DdpNet) => Object.fromEntries(m.namedParameters().map(([n, p]) => [n, values(p)]));
  process.stdout.write(JSON.stringify({ rank, shard, evenShard, noState, consolidated, reloaded, ownedSlots, plain: params(plainModel), zero: params(zeroModel) }) + "\n");
  dist.destroyProcessGroup();
} else {
  await registerTests();
}

// ---------------------------------------------------------------------------------------------
// The tests (the parent process).
async function registerTests(): Promise<void> {
  const runRanks = async (opts: Record<string, unknown>, scenario = "train", worldSize = 2): Promise<string[]> => {
    const port = await freePort();
    return Promise.all(Array.from({ length: worldSize }, (_, rank) => new Promise<string>((resolve, reject) => {
      const env = { ...process.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(worldSize), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port), MINDSEYE_NUM_THREADS: "1", MINDSEYE_BLAS_THREADS: "1" };
      const child = spawn(process.execPath, [SELF, "--rank-child", scenario, JSON.stringify(opts)], { env, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "", stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(stdout);
        else reject(new Error(`rank ${rank} exited with ${code ?? signal}:\n${stderr}`));
      });
    })));
  };

  test("partition: per group, largest first, each to the rank with the fewest elements so far (carried over groups; ties to the lower rank)", () => {
    const t = (n: number) => torch.zeros([n]);
    const [a, b, c, d, e] = [t(10), t(3), t(7), t(5), t(5)];
    const p = partitionParameters([[a!, b!, c!], [d!, e!]], 2);
    // group 0 sorted 10, 7, 3: 10 → r0 (10, 0); 7 → r1 (10, 7); 3 → r1 (10, 10). group 1: 5 → r0 (tie), 5 → r1.
    assert.deepEqual(p.map((r) => r.map((g) => g.map((x) => x.numel()))), [[[10], [5]], [[7, 3], [5]]]);
    // a transformer-like list (24 layers of q, k, v, o, two norms) splits about in half
    const layer = () => [t(4096), t(1024), t(1024), t(4096), t(64), t(64)];
    const sizes = partitionParameters([Array.from({ length: 24 }, layer).flat()], 2).map((r) => r.flat().reduce((s, x) => s + x.numel(), 0));
    assert.ok(Math.abs(sizes[0]! - sizes[1]!) / (sizes[0]! + sizes[1]!) < 0.01, `${sizes}`);
  });

  test("ZeRO-1 over a 1-rank group is the wrapped optimizer (SGD with momentum): same weights, same state", async () => {
    dist.initProcessGroup({ backend: "gloo", rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort: await freePort(), timeoutMs: 5000 });
    try {
      const a = ddpModel(1), b = ddpModel(1);
      const sgd = { lr: 0.1, momentum: 0.9, weightDecay: 0.01 };
      const plain = new optim.SGD(a.parameters().filter((p) => p.requiresGrad), sgd);
      const zero = new ZeroRedundancyOptimizer(b.parameters().filter((p) => p.requiresGrad), optim.SGD, sgd);
      for (let s = 0; s < 5; s++) {
        for (const [m, o] of [[a, plain], [b, zero]] as const) {
          torch.scope(() => {
            const { x, y, flag } = ddpBatch(s, 8);
            ddpLoss(m, x, y, flag).backward();
            o.step();
            o.zeroGrad();
          });
        }
      }
      for (const [[n, p], [, q]] of a.namedParameters().map((e, i) => [e, b.namedParameters()[i]!] as const)) assert.deepEqual(values(p), values(q), n);
      assert.equal(zero.paramGroups[0]!.momentum, 0.9);
      zero.consolidateStateDict();
      assert.equal(stateDiff(zero.stateDict(), plain.stateDict()), 0);
    } finally {
      dist.destroyProcessGroup();
    }
  });

  test("ZeRO-2 over a 1-rank group is AdamW with clip.ts's clipping: same weights and norms; step() without reduceGradients() is refused", async () => {
    dist.initProcessGroup({ backend: "gloo", rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort: await freePort(), timeoutMs: 5000 });
    try {
      const a = ddpModel(1), b = ddpModel(1);
      const hyper = { lr: 0.05, weightDecay: 0.01 };
      const plain = new optim.AdamW(a.parameters().filter((p) => p.requiresGrad), hyper);
      const zero = new ZeroRedundancyOptimizer(b.parameters().filter((p) => p.requiresGrad), optim.AdamW, hyper, { stage: 2 });
      const norms: number[][] = [];
      for (let s = 0; s < 5; s++) {
        const pair: number[] = [];
        for (const [m, o] of [[a, plain], [b, zero]] as const) {
          torch.scope(() => {
            const { x, y, flag } = ddpBatch(s, 8);
            ddpLoss(m, x, y, flag).backward();
            if (o === zero) zero.reduceGradients();
            pair.push(o === zero ? zero.clipGradNorm(0.1) : optim.clipGradNorm(plain.paramGroups[0]!.params, 0.1));
            o.step();
            o.zeroGrad();
          });
        }
        norms.push(pair);
      }
      for (const [[n, p], [, q]] of a.namedParameters().map((e, i) => [e, b.namedParameters()[i]!] as const)) assert.deepEqual(values(p), values(q), n);
      for (const [x, y] of norms) assert.equal(y, x);
      assert.ok(norms.every(([x]) => x! > 0.1), "clipping was active");
      torch.scope(() => ddpLoss(b, ...Object.values(ddpBatch(0, 8)) as [Tensor, Tensor, Tensor]).backward());
      assert.throws(() => zero.step(), /call reduceGradients\(\) on every rank after the last backward/);
      assert.throws(() => zero.clipGradNorm(1), /call reduceGradients\(\)/);
      zero.zeroGrad();
    } finally {
      dist.destroyProcessGroup();
    }
  });

  test("ZeRO-1 on 2 ranks: DDP + ZeroRedundancyOptimizer(AdamW) ends 20 steps (lr changing each step) where DDP + AdamW does; each rank holds only its shard; consolidate and load round-trip", async (t) => {
    type Out = {
      rank: number; shard: { local: number; plain: number; ownedElements: number; ownedParams: number }; evenShard: { local: number; total: number };
      noState: string; consolidated: number[]; reloaded: number; ownedSlots: { own: number; all: number }; plain: Record<string, number[]>; zero: Record<string, number[]>;
    };
    const [r0, r1] = (await runRanks({ steps: 20, batch: 4, more: 5 })).map((s) => JSON.parse(s.trim()) as Out);
    let worst = 0;
    for (const r of [r0!, r1!]) {
      for (const [name, v] of Object.entries(r.plain)) v.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - r.zero[name]![i]!))));
    }
    assert.deepEqual(r0!.zero, r1!.zero, "the two replicas differ");
    const s0 = r0!.shard, s1 = r1!.shard;
    t.diagnostic(`after 20 + 5 steps: max |Δweight| ZeRO-1 vs plain ${worst.toExponential(2)}; state elements: rank 0 ${s0.local}, rank 1 ${s1.local}, plain ${s0.plain}; ` +
      `partition: rank 0 ${s0.ownedParams} parameters (${s0.ownedElements} elements), rank 1 ${s1.ownedParams} (${s1.ownedElements}); an even list: ${r0!.evenShard.local} + ${r1!.evenShard.local} of ${r0!.evenShard.total}`);
    assert.equal(worst, 0, `ZeRO-1 weights differ from plain AdamW's by ${worst}`);
    // the shards: together the plain state, no element twice; AdamW keeps 2 slots per trained element (unused.* never get a gradient)
    assert.equal(s0.local + s1.local, s0.plain);
    assert.ok(s0.local > 0 && s1.local > 0);
    assert.equal(s0.ownedElements + s1.ownedElements, 188); // every trainable element has one owner
    // an evenly divisible list: each rank holds exactly half of the state
    assert.deepEqual([r0!.evenShard.local, r1!.evenShard.local], [320, 320]);
    assert.equal(r0!.evenShard.total, 640);
    assert.match(r0!.noState, /call consolidateStateDict\(to\) on every rank first/);
    assert.deepEqual(r0!.consolidated, [0]);
    assert.deepEqual(r1!.consolidated, [0]);
    assert.equal(r0!.reloaded, 0, "the state rebuilt from each rank's own slots is the full state");
    assert.equal(r0!.ownedSlots.own + r1!.ownedSlots.own, r0!.ownedSlots.all, "each slot is read by one rank");
    assert.ok(r0!.ownedSlots.own > 0 && r1!.ownedSlots.own > 0);
  });

  type Stage2 = {
    rank: number; unreduced: string; norms: { single: number; ddp: number; zero: number }[]; memory: { ddp: number; zero: number; zeroBeforeReduce: number };
    numGradBuckets: number[]; evenGrads: number[]; single: Record<string, number[]>; ddp: Record<string, number[]>; zero: Record<string, number[]>;
  };
  /** Largest |a - b| over two models' named parameters. */
  const weightDiff = (a: Record<string, number[]>, b: Record<string, number[]>) => {
    let worst = 0;
    for (const [name, v] of Object.entries(a)) v.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - b[name]![i]!))));
    return worst;
  };

  for (const [what, opts] of [
    ["one backward per step, no clipping", { steps: 20, batch: 4, accum: 1, clip: Infinity }],
    ["2 micro-batches per step (communication after the last), clipped to norm 0.05", { steps: 20, batch: 4, accum: 2, clip: 0.05 }],
  ] as const) {
    test(`ZeRO-2 on 2 ranks, ${what}: 20 AdamW steps end where DDP + AdamW (bit for bit) and one process on the whole batch (1e-5) end; each rank keeps only its partition's gradients`, { timeout: 120_000 }, async (t) => {
      const [r0, r1] = (await runRanks({ ...opts, clip: opts.clip === Infinity ? 1e30 : opts.clip }, "stage2")).map((s) => JSON.parse(s.trim()) as Stage2);
      assert.deepEqual(r0!.zero, r1!.zero, "the two replicas differ");
      const vsDdp = weightDiff(r0!.zero, r0!.ddp), vsSingle = weightDiff(r0!.zero, r0!.single), ddpVsSingle = weightDiff(r0!.ddp, r0!.single);
      const normErr = Math.max(...r0!.norms.map((n) => Math.abs(n.zero - n.ddp)));
      const normVsSingle = Math.max(...r0!.norms.map((n) => Math.abs(n.zero - n.single)));
      const m0 = r0!.memory, m1 = r1!.memory;
      t.diagnostic(`max |Δweight| ZeRO-2 vs DDP ${vsDdp.toExponential(2)}, vs one process ${vsSingle.toExponential(2)} (DDP vs one process ${ddpVsSingle.toExponential(2)}); ` +
        `max |Δgrad norm| vs DDP ${normErr.toExponential(2)}, vs one process ${normVsSingle.toExponential(2)} (norms ${r0!.norms[0]!.zero.toFixed(4)} … ${r0!.norms.at(-1)!.zero.toFixed(4)}); ` +
        `gradient elements held after the reduction: rank 0 ${m0.zero}, rank 1 ${m1.zero}, DDP ${m0.ddp} per rank (before the reduction ${m0.zeroBeforeReduce}, ${m1.zeroBeforeReduce}); ` +
        `reduce-scatter buckets: ${r0!.numGradBuckets.join(", ")}; the even list: ${r0!.evenGrads.length} + ${r1!.evenGrads.length} of 320 elements`);
      assert.equal(vsDdp, 0, `ZeRO-2 weights differ from DDP's by ${vsDdp}`);
      assert.ok(vsSingle < 1e-5, `ZeRO-2 weights differ from one process's by ${vsSingle}`);
      assert.ok(vsSingle > 0 || ddpVsSingle === 0, "the comparison with one process compares something");
      assert.equal(normErr, 0, `grad norms differ from DDP's by ${normErr}`);
      assert.ok(normVsSingle < 1e-9, `grad norms differ from one process's by ${normVsSingle}`);
      if (opts.clip !== Infinity) assert.ok(r0!.norms.every((n) => n.zero > opts.clip), "clipping was active on every step");
      // every trained element's gradient (fc1, fc2, aux: 170; unused.* never gets one) is held by exactly one rank
      assert.equal(m0.ddp, 170);
      assert.equal(m0.zero + m1.zero, m0.ddp);
      assert.ok(m0.zero < m0.ddp && m1.zero < m0.ddp);
      assert.equal(m0.zeroBeforeReduce, m0.ddp, "before the reduction the local gradients are full-size (the documented cost)");
      // the fixture's partition (rank 0: fc1.weight, 128 elements; rank 1: the other 60) fits one round; the even list takes three
      assert.deepEqual(r0!.numGradBuckets, [1, 3]);
      // the even list: rank 0 owns 64, 64, 32 (the average of 1 and 2 is 1.5), rank 1 the rest
      assert.deepEqual([r0!.evenGrads.length, r1!.evenGrads.length], [160, 160]);
      assert.ok([...r0!.evenGrads, ...r1!.evenGrads].every((g) => g === 1.5));
      assert.match(r0!.unreduced, /call reduceGradients\(\) on every rank after the last backward/);
    });
  }

  test("ZeRO-2 on 3 ranks (an uneven partition, padded chunks), 2 micro-batches per step, clipped: 20 AdamW steps end within 1e-12 of DDP + AdamW and 1e-5 of one process; every gradient is held by one rank", { timeout: 120_000 }, async (t) => {
    const outs = (await runRanks({ steps: 20, batch: 4, accum: 2, clip: 0.05 }, "stage2", 3)).map((s) => JSON.parse(s.trim()) as Stage2);
    const r0 = outs[0]!;
    for (const r of outs) assert.deepEqual(r.zero, r0.zero, `rank ${r.rank}'s replica differs from rank 0's`);
    const vsDdp = weightDiff(r0.zero, r0.ddp), vsSingle = weightDiff(r0.zero, r0.single);
    const normErr = Math.max(...r0.norms.map((n) => Math.abs(n.zero - n.ddp)));
    const held = outs.map((r) => r.memory.zero);
    t.diagnostic(`max |Δweight| ZeRO-2 vs DDP ${vsDdp.toExponential(2)}, vs one process ${vsSingle.toExponential(2)}; max |Δgrad norm| vs DDP ${normErr.toExponential(2)}; ` +
      `gradient elements held after the reduction: ${held.join(" + ")} of ${r0.memory.ddp}; the even list: ${outs.map((r) => r.evenGrads.length).join(" + ")} of 320; buckets ${r0.numGradBuckets.join(", ")}`);
    assert.ok(vsDdp < 1e-12, `ZeRO-2 weights differ from DDP's by ${vsDdp}`);
    assert.ok(vsSingle < 1e-5, `ZeRO-2 weights differ from one process's by ${vsSingle}`);
    assert.ok(normErr < 1e-12, `grad norms differ from DDP's by ${normErr}`);
    assert.equal(held.reduce((a, b) => a + b, 0), r0.memory.ddp);
    assert.ok(held.every((n) => n < r0.memory.ddp));
    assert.equal(outs.reduce((a, r) => a + r.evenGrads.length, 0), 320);
    assert.ok(outs.every((r) => r.evenGrads.every((g) => g === 2)), "the average of 1, 2 and 3");
  });
}
