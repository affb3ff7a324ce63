// bench:ddp — a 2-rank DistributedDataParallel training step of the reference decoder (vocab 1024,
// width 256, 4 layers, 4 heads, sequence 128, batch 8 per rank, AdamW) on one machine over Gloo:
// MindsEye (nn.DistributedDataParallel over its c10d binding) against PyTorch's
// torch.nn.parallel.DistributedDataParallel (Python, same libtorch, same Gloo, same weights and
// batches), each rank with one intra-op thread and one BLAS thread (2 ranks on 2 cores). Rounds
// alternate between the two so both see the same machine state; each round starts its 2 ranks
// fresh and times rank 0's steps after a warm-up step.
//
//   npm run bench:ddp [-- --steps 8 --rounds 3]
// Last line: `ddp step time ratio vs pytorch: R` (median MindsEye step / median PyTorch step).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir, availableParallelism } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { median, fmt } from "./common.js";
import { torch, nn, optim, io, distributed as dist, type Tensor } from "@mindseye/torch";
import { ReferenceDecoder, freePort, type DecoderConfig } from "@mindseye/torch/testing";

const args = parseArgs({
  options: {
    steps: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    python: { type: "string", default: "/usr/bin/python3" },
    worker: { type: "string" }, // internal: run as one rank, reading this fixture
  },
}).values;
const STEPS = Number(args.steps), ROUNDS = Number(args.rounds), WORLD = 2;
const CONFIG: DecoderConfig = { vocabSize: 1024, width: 256, layers: 4, heads: 4, maxSeq: 128 };
const BATCH = 8, LR = 1e-3, WEIGHT_DECAY = 0.01;
const here = dirname(fileURLToPath(import.meta.url));

/** One rank: rank 0's weights broadcast by DDP, this rank's half of the batch, STEPS + 1 steps; prints rank 0's times. */
function worker(fixture: string): void {
  const pg = dist.initProcessGroup({ backend: "gloo", timeoutMs: 120_000 });
  const data = io.loadFile(fixture);
  const model = new ReferenceDecoder(CONFIG);
  model.loadStateDict(new Map([...data].filter(([k]) => k !== "tokens" && k !== "targets")));
  const mine = (t: Tensor) => t.narrow(0, pg.rank * BATCH, BATCH);
  const tokens = mine(data.get("tokens")!), targets = mine(data.get("targets")!);
  const ddp = new nn.DistributedDataParallel(model);
  const opt = new optim.AdamW(model.parameters(), { lr: LR, weightDecay: WEIGHT_DECAY });
  const ms: number[] = [], losses: number[] = [];
  for (let i = 0; i <= STEPS; i++) {
    const t0 = performance.now();
    const loss = torch.scope(() => {
      opt.zeroGrad();
      const l = model.loss(tokens, targets);
      ddp.backward(l);
      opt.step();
      return l.item();
    });
    if (i > 0) ms.push(performance.now() - t0); // step 0 warms up
    losses.push(loss);
  }
  if (pg.rank === 0) console.log(JSON.stringify({ ms, losses, buckets: ddp.numBuckets }));
  dist.destroyProcessGroup();
}

/** Starts WORLD ranks of `argv`; resolves to rank 0's JSON line. */
async function ranks(argv: string[]): Promise<{ ms: number[]; losses: number[] }> {
  const port = await freePort();
  const runs = Array.from({ length: WORLD }, (_, rank) => new Promise<string>((resolve, reject) => {
    const env = {
      ...process.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(WORLD), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port),
      MINDSEYE_NUM_THREADS: "1", MINDSEYE_BLAS_THREADS: "1", OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1",
    };
    const p = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(" ")} rank ${rank} exited with ${code}`))));
  }));
  const outs = await Promise.all(runs);
  return JSON.parse(outs[0]!.trim().split("\n").at(-1)!) as { ms: number[]; losses: number[] };
}

async function main(): Promise<void> {
  console.log(`MindsEye: libtorch ${torch.buildInfo().torchVersion}, ${WORLD} ranks over Gloo, 1 intra-op + 1 BLAS thread per rank, ${availableParallelism()} cores`);
  torch.manualSeed(0);
  const model = new ReferenceDecoder(CONFIG);
  const dir = mkdtempSync(join(tmpdir(), "mindseye-bench-ddp-"));
  try {
    const fixture = join(dir, "init.safetensors");
    const state = new Map<string, Tensor>(model.stateDict());
    state.set("tokens", torch.randint(0, CONFIG.vocabSize, [WORLD * BATCH, CONFIG.maxSeq])).set("targets", torch.randint(0, CONFIG.vocabSize, [WORLD * BATCH, CONFIG.maxSeq]));
    io.saveFile(fixture, state);
    const me: number[] = [], py: number[] = [];
    let losses: { me: number[]; py: number[] } = { me: [], py: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const a = await ranks([process.execPath, fileURLToPath(import.meta.url), "--worker", fixture, "--steps", String(STEPS)]);
      const b = await ranks([args.python!, join(here, "..", "ddp_ref.py"), fixture, String(STEPS), JSON.stringify({ ...CONFIG, batch: BATCH, lr: LR, weightDecay: WEIGHT_DECAY })]);
      me.push(...a.ms);
      py.push(...b.ms);
      losses = { me: a.losses, py: b.losses };
      console.log(`round ${r + 1}: MindsEye ${fmt(median(a.ms))} ms, PyTorch ${fmt(median(b.ms))} ms per step`);
    }
    const drift = Math.max(...losses.me.map((l, i) => Math.abs(l - losses.py[i]!)));
    console.log(`losses agree: max |Δ| ${drift.toExponential(2)} over ${losses.me.length} steps (same weights, batches and optimizer)`);
    const m = median(me), p = median(py);
    console.log(`median 2-rank DDP step: MindsEye ${fmt(m)} ms, PyTorch ${fmt(p)} ms (${fmt((WORLD * BATCH * CONFIG.maxSeq) / (m / 1000), 0)} vs ${fmt((WORLD * BATCH * CONFIG.maxSeq) / (p / 1000), 0)} tokens/s)`);
    console.log(`ddp step time ratio vs pytorch: ${(m / p).toFixed(2)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (args.worker !== undefined) worker(args.worker);
else await main();
