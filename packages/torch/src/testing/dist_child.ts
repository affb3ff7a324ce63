// One rank of the distributed tests (distributed.test.ts starts two of these with torchrun's
// variables): `node dist_child.js <scenario> <json options>`. Each prints one JSON line of results.
import { torch, nn, optim, distributed as dist, type Tensor } from "../index.js";
import { ddpBatch, ddpLoss, ddpModel } from "./ddp_fixture.js";

const [scenario, json] = process.argv.slice(2);
const opts = JSON.parse(json ?? "{}") as { timeoutMs?: number; accumulate?: number; steps?: number; batch?: number };
const out = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");
const values = (t: Tensor) => [...t.toTypedArray()].map(Number);

const pg = dist.initProcessGroup({ backend: "gloo", timeoutMs: opts.timeoutMs ?? 20_000 });
const { rank, worldSize } = pg;

if (scenario === "collectives") {
  // rank r holds r+1 everywhere, so every expected value is worked out by hand in the test
  const sum = dist.allReduce(torch.full([3], rank + 1, { dtype: "float32" }), "sum");
  const avg = dist.allReduce(torch.full([2], rank + 1, { dtype: "float64" }), "avg");
  const max = dist.allReduce(torch.tensor([rank, -rank], { dtype: "int64" }), "max");
  const strided = torch.arange(6, undefined, 1, { dtype: "float32" }).view(2, 3).mul(rank + 1).transpose(0, 1); // not contiguous
  dist.allReduce(strided, "sum");
  const gathered = dist.allGather(torch.tensor([rank, 10 * rank], { dtype: "float32" }));
  const scattered = dist.reduceScatter([0, 1].map((r) => torch.full([2], 10 * r + rank + 1, { dtype: "float32" })), "sum");
  const bcast = dist.broadcast(torch.full([2], rank + 5, { dtype: "float32" }), 1);
  dist.barrier();
  out({ rank, worldSize, sum: values(sum), avg: values(avg), max: values(max), strided: values(strided.contiguous()), gathered: gathered.map(values), scattered: values(scattered), bcast: values(bcast) });
} else if (scenario === "ddp") {
  const model = ddpModel(100 + rank); // different seeds per rank: DDP must broadcast rank 0's weights
  const ddp = new nn.DistributedDataParallel(model, { bucketCapMb: 0.001 }); // ~1 KB buckets: several buckets
  const opt = new optim.AdamW(model.parameters().filter((p) => p.requiresGrad), { lr: 1e-2, weightDecay: 0.1 });
  const steps = opts.steps ?? 20, b = opts.batch ?? 4, k = opts.accumulate ?? 1;
  for (let s = 0; s < steps; s++) {
    torch.scope(() => {
      const { x, y, flag } = ddpBatch(s, worldSize * b);
      const mine = (t: Tensor) => t.narrow(0, rank * b, b);
      for (let m = 0; m < k; m++) {
        const micro = (t: Tensor) => mine(t).narrow(0, m * (b / k), b / k);
        const loss = ddpLoss(model, micro(x), micro(y), micro(flag)).div(k);
        if (m < k - 1) ddp.noSync(() => ddp.backward(loss));
        else ddp.backward(loss);
      }
      opt.step();
      opt.zeroGrad();
    });
  }
  out({ rank, numBuckets: ddp.numBuckets, params: Object.fromEntries(model.namedParameters().map(([n, p]) => [n, values(p)])) });
} else if (scenario === "mismatch") {
  const model = ddpModel(0);
  if (rank === 1) model.unused.weight.requiresGrad_(false);
  try {
    new nn.DistributedDataParallel(model);
    out({ rank, error: null });
  } catch (e) {
    out({ rank, error: (e as Error).message });
  }
} else if (scenario === "die") {
  dist.barrier();
  if (rank === 1) process.kill(process.pid, "SIGKILL");
  const t = torch.ones([4]);
  for (;;) dist.allReduce(t); // rank 0 must fail here, not hang
} else if (scenario === "stall") {
  dist.barrier();
  if (rank === 1) {
    setTimeout(() => process.exit(0), 2 * (opts.timeoutMs ?? 20_000)); // alive, but never joins
  } else {
    dist.allReduce(torch.ones([4])); // rank 0 must time out here
  }
} else {
  throw new Error(`dist_child: unknown scenario ${scenario}`);
}

if (scenario !== "stall" || rank === 0) dist.destroyProcessGroup();
