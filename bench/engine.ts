// bench:engine — trains the reference decoder (vocab 1024, width 256, 4 layers, 4 heads,
// sequence 128, batch 16, AdamW) in MindsEye (its default settings) and in PyTorch (Python,
// same libtorch, same initial weights and batch, at its best thread setting), alternating
// rounds in one run so both see the same machine state. Also prints per-op call overhead and
// matmul GFLOP/s at 1024³ beside what the BLAS reaches alone (numpy).
//
//   npm run bench:engine [-- --steps 20 --rounds 5]
// Last line: `engine step time ratio vs pytorch: R` (median MindsEye step / median PyTorch step).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir, availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PythonWorker, median, fmt } from "./common.js";
import { torch, optim, io, type Tensor } from "@mindseye/torch";
import { ReferenceDecoder, type DecoderConfig } from "@mindseye/torch/testing";

const args = parseArgs({ options: { steps: { type: "string", default: "20" }, rounds: { type: "string", default: "5" }, python: { type: "string", default: "/usr/bin/python3" } } }).values;
const STEPS = Number(args.steps), ROUNDS = Number(args.rounds);
const CONFIG: DecoderConfig = { vocabSize: 1024, width: 256, layers: 4, heads: 4, maxSeq: 128 };
const BATCH = 16, LR = 1e-3, WEIGHT_DECAY = 0.01;



function timeOverhead(n: number): { addUs: number; viewUs: number; noopUs: number } {
  const a = torch.ones([1]), b = torch.ones([1]), x = torch.ones([4, 8]);
  const per = (fn: () => void) => {
    for (let i = 0; i < 1000; i++) fn();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    return Number(process.hrtime.bigint() - t0) / n / 1000;
  };
  // Each result is disposed at once, as torch.scope does at the end of a step.
  const r = { addUs: per(() => a.add(b).dispose()), viewUs: per(() => x.view(8, 4).dispose()), noopUs: per(() => torch._noop(a._h, b._h)) };
  [a, b, x].forEach((t) => t.dispose());
  return r;
}

function matmulGflops(n: number, reps: number): number {
  return torch.scope(() => {
    const a = torch.randn([n, n]), b = torch.randn([n, n]);
    a.matmul(b).dispose();
    let best = Infinity;
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      a.matmul(b).dispose();
      best = Math.min(best, performance.now() - t0);
    }
    return (2 * n ** 3) / (best / 1000) / 1e9;
  });
}

async function main(): Promise<void> {
  const settings = torch.getThreads();
  console.log(`MindsEye: libtorch ${torch.buildInfo().torchVersion}, intra-op threads ${settings.intraOp}, BLAS threads ${settings.blas}`);

  // Same weights and batch on both sides: written here, read by the worker.
  torch.manualSeed(0);
  const model = new ReferenceDecoder(CONFIG);
  const tokens = torch.randint(0, CONFIG.vocabSize, [BATCH, CONFIG.maxSeq]);
  const targets = torch.randint(0, CONFIG.vocabSize, [BATCH, CONFIG.maxSeq]);
  const dir = mkdtempSync(join(tmpdir(), "mindseye-bench-"));
  const weights = join(dir, "init.safetensors");
  const state = new Map<string, Tensor>(model.stateDict());
  state.set("tokens", tokens).set("targets", targets);
  io.saveFile(weights, state);
  const opt = new optim.AdamW(model.parameters(), { lr: LR, weightDecay: WEIGHT_DECAY });

  let py = new PythonWorker("engine_ref.py", args.python);
  const init = await py.call({ cmd: "init", config: CONFIG, weights, lr: LR, weightDecay: WEIGHT_DECAY, threads: 1 });
  console.log(`PyTorch:  ${String(init.torch)} (Python, same libtorch)`);

  const mindseyeSteps = (n: number) => {
    const ms: number[] = [], losses: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const loss = torch.scope(() => {
        opt.zeroGrad();
        const l = model.loss(tokens, targets);
        l.backward();
        opt.step();
        return l;
      });
      ms.push(performance.now() - t0);
      losses.push(loss.item());
      loss.dispose();
    }
    return { ms, losses };
  };

  // 1. Same computation: the first step's loss agrees (same weights, batch and kernels).
  const first = mindseyeSteps(1).losses[0]!;
  const pyFirst = ((await py.call({ cmd: "steps", n: 1 })).losses as number[])[0]!;
  console.log(`first-step loss: MindsEye ${first.toFixed(6)}, PyTorch ${pyFirst.toFixed(6)}`);

  // 2. PyTorch at its best setting: 1 or all intra-op threads, with glibc's default allocator
  //    and then with MindsEye's allocator tuning (mallopt cannot be undone, so it goes last).
  const cores = availableParallelism();
  await py.call({ cmd: "steps", n: 3 }); // first steps are cold (allocations, page faults): not a fair sample
  let best = { threads: 1, allocator: "glibc default", ms: Infinity };
  for (const allocator of ["glibc default", "MindsEye tuning"]) {
    if (allocator !== "glibc default") await py.call({ cmd: "allocator", mmap: 32 << 20, trim: 1 << 30, topPad: 64 << 20 });
    for (const threads of [...new Set([1, cores])]) {
      await py.call({ cmd: "threads", threads });
      const ms = median((await py.call({ cmd: "steps", n: 3 })).ms as number[]);
      console.log(`PyTorch warm-up, torch.set_num_threads(${threads}), ${allocator} allocator: ${fmt(ms)} ms/step`);
      if (ms < best.ms) best = { threads, allocator, ms };
    }
  }
  if (best.allocator === "glibc default") {
    // The tuning is in effect now and cannot be reverted in-process: restart the worker plain.
    py.close();
    py = new PythonWorker("engine_ref.py", args.python);
    await py.call({ cmd: "init", config: CONFIG, weights, lr: LR, weightDecay: WEIGHT_DECAY, threads: best.threads });
    await py.call({ cmd: "steps", n: 2 });
  }
  await py.call({ cmd: "threads", threads: best.threads });
  mindseyeSteps(3); // warm-up

  // 3. Alternating rounds.
  const mine: number[] = [], theirs: number[] = [];
  const per = Math.max(1, Math.round(STEPS / ROUNDS));
  for (let r = 0; r < ROUNDS; r++) {
    mine.push(...mindseyeSteps(per).ms);
    theirs.push(...((await py.call({ cmd: "steps", n: per })).ms as number[]));
    console.log(`round ${r + 1}/${ROUNDS}: MindsEye ${fmt(median(mine))} ms, PyTorch ${fmt(median(theirs))} ms (medians so far)`);
  }

  // 4. Per-op overhead and matmul throughput.
  const over = timeOverhead(100_000);
  const pyOver = await py.call({ cmd: "overhead", n: 100_000 });
  console.log(`per-op overhead (1-element add, result freed): MindsEye ${fmt(over.addUs, 2)} µs, PyTorch ${fmt(pyOver.add_us as number, 2)} µs`);
  console.log(`per-op overhead (view):                       MindsEye ${fmt(over.viewUs, 2)} µs, PyTorch ${fmt(pyOver.view_us as number, 2)} µs`);
  console.log(`empty native call from JavaScript: ${fmt(over.noopUs, 3)} µs`);
  const mm = matmulGflops(1024, 5);
  const pyMm = await py.call({ cmd: "matmul", n: 1024, reps: 5 });
  const blasAlone = pyMm.numpy_gflops === undefined ? "n/a (numpy missing)" : `${fmt(pyMm.numpy_gflops as number)} GFLOP/s`;
  console.log(`matmul 1024³ float32: MindsEye ${fmt(mm)} GFLOP/s, PyTorch ${fmt(pyMm.torch_gflops as number)} GFLOP/s, BLAS alone (numpy) ${blasAlone}`);
  py.close();
  rmSync(dir, { recursive: true, force: true });

  const m = median(mine), p = median(theirs);
  console.log(`median step: MindsEye ${fmt(m)} ms (${fmt((BATCH * CONFIG.maxSeq) / (m / 1000), 0)} tokens/s), PyTorch ${fmt(p)} ms with torch.set_num_threads(${best.threads}) and the ${best.allocator} allocator`);
  console.log(`engine step time ratio vs pytorch: ${(m / p).toFixed(3)}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
