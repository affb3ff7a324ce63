// bench:models — one training step (forward, next-token cross-entropy, backward; no optimizer
// step unless --adamw) of a Qwen2 preset in MindsEye (its default settings) and in PyTorch
// (bench/models_ref.py: HF's Qwen2 in plain PyTorch, same weights and batch; on the CPU with the
// same libtorch, at its best thread and allocator setting), alternating rounds in one run. The
// default is the `bench` preset (vocab 4096, width 512, 8 layers, GQA 8/2 heads, MLP 1376, tied
// embeddings) on batch 8 × 256 tokens, on the CPU.
//
//   npm run bench:models [-- --steps 8 --rounds 8 --profile]
//   node bench/dist/models.js --device cuda --autocast --adamw --preset qwen2.5-0.5b --batch 8 --seq 1024 --peak-tflops 989 --python python3
// On a GPU (--device cuda) both sides run there, the forward and loss under bf16 autocast with
// --autocast (fp32 weights, as torch.autocast), every step timed to a device synchronisation; the
// run also prints tokens/s and the model FLOPs utilisation against --peak-tflops (6·N + 12·L·d·T
// FLOPs per token, PaLM's count). bench/gpu.sh runs it on a machine with a CUDA PyTorch.
// Rounds of one step each by default: on a shared 2-core machine, fine alternation keeps bursts of
// outside load from landing on one side only.
// Last line: `model step time ratio vs pytorch: R` (median MindsEye step / median PyTorch step).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir, availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PythonWorker, median, fmt } from "./common.js";
import { torch, F, io, optim, type Tensor, type Device } from "@mindseye/torch";
import { Qwen2ForCausalLM, qwen2Preset, toHfConfig } from "mindseye/dist/models/qwen2.js";

const args = parseArgs({
  options: {
    steps: { type: "string", default: "8" },
    rounds: { type: "string", default: "8" },
    python: { type: "string", default: "/usr/bin/python3" },
    profile: { type: "boolean", default: false },
    preset: { type: "string", default: "bench" },
    batch: { type: "string", default: "8" },
    seq: { type: "string", default: "256" },
    device: { type: "string", default: "cpu" },
    autocast: { type: "boolean", default: false },
    adamw: { type: "boolean", default: false },
    "peak-tflops": { type: "string" },
  },
}).values;
const STEPS = Number(args.steps), ROUNDS = Number(args.rounds);
const CONFIG = qwen2Preset(args.preset);
const BATCH = Number(args.batch), SEQ = Number(args.seq), V = CONFIG.vocabSize;
const DEVICE = args.device as Device, ON_GPU = DEVICE !== "cpu";
if (ON_GPU && !torch.cudaIsAvailable()) throw new Error(`--device ${DEVICE}: this build of the addon sees no CUDA device (mindseye doctor)`);
if (args.autocast && !ON_GPU) throw new Error("--autocast is CUDA autocast: it needs --device cuda");



interface Steps { ms: number[]; forward: number[]; backward: number[]; losses: number[] }

async function main(): Promise<void> {
  const settings = torch.getThreads();
  console.log(`MindsEye: libtorch ${torch.buildInfo().torchVersion}, intra-op threads ${settings.intraOp}, BLAS threads ${settings.blas}`);

  // Same weights and batch on both sides: written here, read by the worker.
  const model = new Qwen2ForCausalLM(CONFIG, { generator: new torch.Generator(0) }).train();
  const g = new torch.Generator(1);
  const tokens = torch.randint(0, V, [BATCH, SEQ], { generator: g });
  const targets = torch.randint(0, V, [BATCH, SEQ], { generator: g });
  const dir = mkdtempSync(join(tmpdir(), "mindseye-bench-models-"));
  const weights = join(dir, "init.safetensors");
  const state = new Map<string, Tensor>([...model.stateDict()].filter(([k]) => !(CONFIG.tieWordEmbeddings && k === "lm_head.weight")));
  state.set("tokens", tokens).set("targets", targets);
  io.saveFile(weights, state);
  const hfConfig = toHfConfig(CONFIG);
  const what = `forward + backward${args.adamw ? " + AdamW" : " (no optimizer step)"}${args.autocast ? ", bf16 autocast" : ""}`;
  console.log(`model: Qwen2 ${args.preset} preset, ${(model.numParameters() / 1e6).toFixed(2)} M parameters, batch ${BATCH} × ${SEQ} tokens, ${what}, on ${DEVICE}`);
  model.to({ device: DEVICE });
  const [x, y] = [tokens.to({ device: DEVICE }), targets.to({ device: DEVICE })];
  const opt = args.adamw ? new optim.AdamW(model.parameters(), { lr: 1e-5 }) : null;
  const sync = () => { if (ON_GPU) torch.synchronize(); };

  const ref = { config: hfConfig, weights, device: DEVICE, autocast: args.autocast, adamw: args.adamw };
  let py = new PythonWorker("models_ref.py", args.python);
  const init = await py.call({ cmd: "init", ...ref, threads: 1 });
  console.log(`PyTorch:  ${String(init.torch)} (Python${ON_GPU ? "" : ", same libtorch"}), ${((init.parameters as number) / 1e6).toFixed(2)} M parameters, ${String(init.attention)} attention`);

  const mindseyeSteps = (n: number): Steps => {
    const out: Steps = { ms: [], forward: [], backward: [], losses: [] };
    for (let i = 0; i < n; i++) {
      model.zeroGrad();
      sync();
      const t0 = performance.now();
      let t1 = 0;
      const loss = torch.scope(() => {
        const forward = () => F.crossEntropy(model.forward({ inputIds: x }).logits.view(-1, V), y.view(-1)); // logits [B, T, V]
        const l = args.autocast ? torch.autocast(forward) : forward();
        sync();
        t1 = performance.now();
        l.backward();
        opt?.step();
        sync();
        return l;
      });
      const t2 = performance.now();
      out.ms.push(t2 - t0);
      out.forward.push(t1 - t0);
      out.backward.push(t2 - t1);
      out.losses.push(loss.item());
      loss.dispose();
    }
    return out;
  };
  const pySteps = async (n: number): Promise<Steps> => {
    const r = await py.call({ cmd: "steps", n });
    return { ms: r.ms as number[], forward: r.forward_ms as number[], backward: r.backward_ms as number[], losses: r.losses as number[] };
  };

  // 1. Same computation: the first step's loss agrees (same weights, batch and kernels).
  const first = mindseyeSteps(1).losses[0]!;
  const pyFirst = (await pySteps(1)).losses[0]!;
  console.log(`first-step loss: MindsEye ${first.toFixed(6)}, PyTorch ${pyFirst.toFixed(6)}`);

  // 2. PyTorch at its best setting: 1 or all intra-op threads, with glibc's default allocator
  //    and then with MindsEye's allocator tuning (mallopt cannot be undone, so it goes last).
  //    On a GPU neither matters: a few warm-up steps each.
  const cores = availableParallelism();
  await pySteps(1); // the first steps are cold (allocations, page faults)
  let best = { threads: 1, allocator: "glibc default", ms: Infinity };
  if (ON_GPU) {
    await pySteps(3);
    best = { threads: 1, allocator: "CUDA caching", ms: 0 };
  }
  for (const allocator of ON_GPU ? [] : ["glibc default", "MindsEye tuning"]) {
    if (allocator !== "glibc default") await py.call({ cmd: "allocator", mmap: 32 << 20, trim: 1 << 30, topPad: 64 << 20 });
    for (const threads of [...new Set([1, cores])]) {
      await py.call({ cmd: "threads", threads });
      const ms = Math.min(...(await pySteps(2)).ms); // the faster of two: less sensitive to outside load
      console.log(`PyTorch warm-up, torch.set_num_threads(${threads}), ${allocator} allocator: ${fmt(ms)} ms/step`);
      if (ms < best.ms) best = { threads, allocator, ms };
    }
  }
  if (best.allocator === "glibc default") {
    // The tuning is in effect now and cannot be reverted in-process: restart the worker plain.
    py.close();
    py = new PythonWorker("models_ref.py", args.python);
    await py.call({ cmd: "init", ...ref, threads: best.threads });
    await pySteps(3);
  }
  await py.call({ cmd: "threads", threads: best.threads });
  mindseyeSteps(3); // warm-up: the first steps grow the heap (page faults), as PyTorch's warm-up steps did

  // 3. Alternating rounds.
  const mine: Steps = { ms: [], forward: [], backward: [], losses: [] };
  const theirs: Steps = { ms: [], forward: [], backward: [], losses: [] };
  const add = (into: Steps, s: Steps) => { into.ms.push(...s.ms); into.forward.push(...s.forward); into.backward.push(...s.backward); };
  const per = Math.max(1, Math.round(STEPS / ROUNDS));
  for (let r = 0; r < ROUNDS; r++) {
    const a = mindseyeSteps(per), b = await pySteps(per);
    add(mine, a);
    add(theirs, b);
    const list = (xs: number[]) => xs.map((x) => fmt(x, 0)).join(", ");
    console.log(`round ${r + 1}/${ROUNDS}: MindsEye ${list(a.ms)} ms, PyTorch ${list(b.ms)} ms; medians so far ${fmt(median(mine.ms))} / ${fmt(median(theirs.ms))} ms`);
  }
  console.log(`forward (incl. loss) / backward medians: MindsEye ${fmt(median(mine.forward))} / ${fmt(median(mine.backward))} ms, PyTorch ${fmt(median(theirs.forward))} / ${fmt(median(theirs.backward))} ms`);

  if (args.profile) {
    const prof = await py.call({ cmd: "profile", n: 2, rows: 30 });
    console.log(`PyTorch autograd profiler, 2 steps, by self CPU time:\n${String(prof.table)}`);
  }
  py.close();
  rmSync(dir, { recursive: true, force: true });

  const m = median(mine.ms), p = median(theirs.ms);
  const tok = BATCH * SEQ;
  console.log(`median step: MindsEye ${fmt(m)} ms (${fmt(tok / (m / 1000), 0)} tokens/s), PyTorch ${fmt(p)} ms (${fmt(tok / (p / 1000), 0)} tokens/s) with torch.set_num_threads(${best.threads}) and the ${best.allocator} allocator`);
  if (args["peak-tflops"] !== undefined) {
    // PaLM's count: 6 FLOPs per parameter and token (forward + backward), plus attention's 12·L·d·T.
    const { numHiddenLayers: L, numAttentionHeads: H, headDim: hd } = CONFIG;
    const perToken = 6 * model.numParameters() + 12 * L * H * hd * SEQ;
    const mfu = (ms: number) => (100 * perToken * tok / (ms / 1000) / (Number(args["peak-tflops"]) * 1e12)).toFixed(1);
    console.log(`model FLOPs utilisation (${(perToken / 1e9).toFixed(2)} GFLOPs per token, peak ${args["peak-tflops"]} TFLOPS): MindsEye ${mfu(m)}%, PyTorch ${mfu(p)}%`);
  }
  console.log(`model step time ratio vs pytorch: ${(m / p).toFixed(3)}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
