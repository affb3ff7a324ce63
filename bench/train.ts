// bench:train — one latent-pretrain step of the demo study (configs/demo.yaml): the MindsEyeVLM's
// language model (Qwen2, hidden 96, MLP 192, 3 layers, 4 heads / 2 KV heads, tied embeddings,
// the world tokenizer's vocabulary) and its MLP latent head, on a text-only batch as the
// latent-pretrain stage builds it (32 world captions, left-padded, then K = 4 latent query
// tokens), with the full loss (objectives/combined.ts: λ_nt·CE + λ_sim·cosine against
// layer-normed targets + λ_align·InfoNCE, τ = 0.1) against random targets [32, 4, 64], backward
// and the AdamW step. MindsEye runs it with its default settings; PyTorch (bench/train_ref.py:
// the same model and loss in plain PyTorch, same libtorch, same weights, batch and optimizer)
// at its best thread and allocator setting; alternating rounds in one run.
//
//   npm run bench:train [-- --steps 80 --rounds 16 --profile]
// --profile counts and times the ops of one step: every native call MindsEye makes beside
// PyTorch's autograd profiler (at these sizes per-op overhead is most of the step).
// Last line: `latent step time ratio vs pytorch: R` (median MindsEye step / median PyTorch step).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, availableParallelism } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PythonWorker, NativeProfiler, median, fmt } from "./common.js";
import { torch, optim, io, type Tensor } from "@mindseye/torch";
// bench/tsconfig.json references packages/mindseye: `tsc -b bench` builds it first.
import { loadStudy } from "mindseye/dist/experiment/runner.js";
import { MindsEyeVLM, type VlmConfig } from "mindseye/dist/models/vlm.js";
import { resolveQwen2, toHfConfig } from "mindseye/dist/models/qwen2.js";
import { resolveVitConfig } from "mindseye/dist/models/vit.js";
import { resolveLatentHead, latentTokens } from "mindseye/dist/models/latent_head.js";
import { latentObjective, parsePool, pooledCount, IGNORE_INDEX, type ObjectiveConfig } from "mindseye/dist/objectives/index.js";
import { buildTokenizer } from "mindseye/dist/world/tokenizer_json.js";
import { Tokenizer } from "mindseye/dist/data/tokenizer.js";
import { sampleScene } from "mindseye/dist/world/scene.js";
import { sceneCaptions } from "mindseye/dist/world/captions.js";
import { Rng } from "mindseye/dist/world/rng.js";

const args = parseArgs({
  options: {
    steps: { type: "string", default: "80" },
    rounds: { type: "string", default: "16" },
    config: { type: "string", default: "configs/demo.yaml" },
    python: { type: "string", default: "/usr/bin/python3" },
    profile: { type: "boolean", default: false },
  },
}).values;
const STEPS = Number(args.steps), ROUNDS = Number(args.rounds);
const here = dirname(fileURLToPath(import.meta.url));

interface Steps { ms: number[]; forward: number[]; backward: number[]; optimizer: number[]; losses: number[] }
const emptySteps = (): Steps => ({ ms: [], forward: [], backward: [], optimizer: [], losses: [] });

async function main(): Promise<void> {
  const settings = torch.getThreads();
  console.log(`MindsEye: libtorch ${torch.buildInfo().torchVersion}, intra-op threads ${settings.intraOp}, BLAS threads ${settings.blas}, ${availableParallelism()} cores`);
  const study = loadStudy(resolve(join(here, "..", ".."), args.config));
  const lp = study.latent_pretrain, lm = study.vlm_base.lm, enc = study.world_encoder.encoder;
  const dir = mkdtempSync(join(tmpdir(), "mindseye-bench-train-"));
  try {
    // 1. The model as the study builds it: the world tokenizer's vocabulary, the vlm-base LM, the
    //    frozen world encoder (unused by a text-only step) and the latent head.
    const { tokenizer, config: tokConfig } = buildTokenizer(study.world.latents);
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokConfig));
    const tok = Tokenizer.fromPretrained(dir);
    const pool = parsePool(lp.pool), gridSize = study.world.size / enc.patch_size;
    const K = pooledCount(pool, gridSize * gridSize), D = enc.hidden_size;
    const latentIds = latentTokens(K).map((t) => tok.tokenToId(t)!);
    const text = resolveQwen2({
      vocabSize: tok.vocabSize, hiddenSize: lm.hidden_size, intermediateSize: lm.intermediate_size, numHiddenLayers: lm.layers,
      numAttentionHeads: lm.heads, numKeyValueHeads: lm.kv_heads, tieWordEmbeddings: true, maxPositionEmbeddings: 2048,
    });
    const config: VlmConfig = {
      vision: resolveVitConfig({
        variant: "siglip", hiddenSize: enc.hidden_size, intermediateSize: enc.intermediate_size, numHiddenLayers: enc.layers,
        numAttentionHeads: enc.heads, imageSize: study.world.size, patchSize: enc.patch_size, useHead: false,
      }),
      text, visionFeatureLayer: study.vlm_base.vision_feature_layer, visionFeatureSelectStrategy: "default", imageTokenId: tok.tokenToId("<|image_pad|>")!,
      latentHead: resolveLatentHead({ type: lp.head.type, inputSize: text.hiddenSize, hiddenSize: lp.head.hidden_size ?? text.hiddenSize, latentSize: D, bias: true }),
      latentTokenIds: latentIds,
    };
    const model = new MindsEyeVLM(config, { generator: new torch.Generator(0) }).train();
    model.vision_tower.requiresGrad_(false);
    const head = model.latent_head!;

    // 2. The batch as the stage collates it: caption ids, then the latent queries; left padding;
    //    CE on the caption only. Captions are the world's own, one per scene.
    const B = lp.train.batch_size;
    const captions = Array.from({ length: B }, (_, i) => {
      const scene = sampleScene(new Rng(study.world.seed, "scene", i + 1), i + 1, "train", study.world.size);
      const texts = sceneCaptions(scene, new Rng(study.world.seed, "captions", i + 1));
      return tok.encode(texts[i % texts.length]!, { addSpecialTokens: false });
    });
    const T = Math.max(...captions.map((c) => c.length)) + K;
    const left = (row: number[], v: number) => [...Array<number>(T - row.length).fill(v), ...row];
    const pad = tok.specialTokenIds.pad ?? 0;
    const inputIds = torch.tensor(captions.map((c) => left([...c, ...latentIds], pad)), { dtype: "int64" }); // [B, T]
    const labels = torch.tensor(captions.map((c) => left([...c, ...latentIds.map(() => IGNORE_INDEX)], IGNORE_INDEX)), { dtype: "int64" });
    const attentionMask = torch.tensor(captions.map((c) => left([...c, ...latentIds].map(() => 1), 0)), { dtype: "int64" });
    const targets = torch.randn([B, K, D], { generator: new torch.Generator(1) }); // stands in for the target cache
    const lengths = captions.map((c) => c.length);
    console.log(`model: Qwen2 LM ${lm.hidden_size}/${lm.intermediate_size}, ${lm.layers} layers, ${lm.heads}/${lm.kv_heads} heads, vocab ${tok.vocabSize}, tied; `
      + `${lp.head.type} latent head ${text.hiddenSize} → ${D}; ${((model.language_model.numParameters() + head.numParameters()) / 1e6).toFixed(3)} M trained parameters`);
    console.log(`batch: ${B} world captions of ${Math.min(...lengths)}-${Math.max(...lengths)} tokens (mean ${fmt(lengths.reduce((a, b) => a + b, 0) / B)}) + ${K} latent tokens, `
      + `left-padded to ${T}; targets [${B}, ${K}, ${D}] random`);

    const objective: ObjectiveConfig = {
      lambdaNt: lp.loss.lambda_nt, lambdaSim: lp.loss.lambda_sim, lambdaAlign: lp.loss.lambda_align,
      similarity: lp.loss.similarity, targetNorm: lp.loss.target_norm, alignment: lp.loss.alignment, smoothL1Beta: lp.loss.smooth_l1_beta,
    };
    if (lp.loss.learn_temperature) throw new Error(`${args.config}: learn_temperature is not benchmarked (a fixed τ is)`);
    if (objective.similarity !== "cosine" || objective.targetNorm !== "layernorm" || objective.alignment !== "infonce") {
      throw new Error(`${args.config}: bench/train_ref.py implements the demo's loss (cosine, layernorm targets, infonce), not ${objective.similarity}/${objective.targetNorm}/${objective.alignment}`);
    }
    const lr = lp.train.lr, weightDecay = lp.train.weight_decay;
    const params = [...model.language_model.parameters(), ...head.parameters()];
    const opt = new optim.AdamW(params, { lr, weightDecay });
    console.log(`loss: ${lp.loss.lambda_nt}·CE + ${lp.loss.lambda_sim}·${lp.loss.similarity} (${lp.loss.target_norm} targets) + ${lp.loss.lambda_align}·${lp.loss.alignment} (τ ${lp.loss.temperature}); `
      + `AdamW lr ${lr}, weight decay ${weightDecay}, one group of ${params.length} tensors`);

    // Same weights and batch on both sides: written here, read by the worker.
    const weights = join(dir, "init.safetensors");
    const state = new Map<string, Tensor>([...model.language_model.stateDict()].filter(([k]) => k !== "lm_head.weight")); // tied: saved once, as HF does
    for (const [k, t] of head.stateDict()) state.set(`latent_head.${k}`, t);
    state.set("input_ids", inputIds).set("labels", labels).set("attention_mask", attentionMask).set("targets", targets);
    io.saveFile(weights, state);

    /** One step; `mark` names the phase that follows (for --profile). */
    const step = (mark: (phase: string) => void = () => {}): { loss: Tensor; ce: Tensor | null; sim: Tensor | null; align: Tensor | null; t1: number; t2: number } => {
      let t1 = 0, t2 = 0;
      const out = torch.scope(() => {
        opt.zeroGrad();
        const { logits, latents } = model.predictLatents(inputIds, attentionMask); // [B, T, V], [B, K, D]
        const terms = latentObjective(objective, { logits, labels, pred: latents, targets }, { temperature: lp.loss.temperature, scale: 10, bias: -10 });
        mark("backward");
        t1 = performance.now();
        terms.loss.backward();
        t2 = performance.now();
        mark("AdamW");
        opt.step();
        mark("freeing the step's tensors (scope exit)");
        return terms;
      });
      return { ...out, t1, t2 };
    };
    const mindseyeSteps = (n: number): Steps => {
      const s = emptySteps();
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        const r = step();
        const t3 = performance.now();
        s.ms.push(t3 - t0);
        s.forward.push(r.t1 - t0);
        s.backward.push(r.t2 - r.t1);
        s.optimizer.push(t3 - r.t2);
        s.losses.push(r.loss.item());
        for (const t of [r.loss, r.ce, r.sim, r.align]) t?.dispose();
      }
      return s;
    };

    let py = new PythonWorker("train_ref.py", args.python);
    const init = {
      cmd: "init", config: toHfConfig(text), weights, latentIds, lr, weightDecay,
      loss: { lambdaNt: objective.lambdaNt, lambdaSim: objective.lambdaSim, lambdaAlign: objective.lambdaAlign, temperature: lp.loss.temperature },
    };
    const info = await py.call({ ...init, threads: 1 });
    console.log(`PyTorch:  ${String(info.torch)} (Python, same libtorch), ${((info.parameters as number) / 1e6).toFixed(3)} M trained parameters`);
    const pySteps = async (n: number): Promise<Steps> => {
      const r = await py.call({ cmd: "steps", n });
      return { ms: r.ms as number[], forward: r.forward_ms as number[], backward: r.backward_ms as number[], optimizer: r.optimizer_ms as number[], losses: r.losses as number[] };
    };

    // 3. Same computation: the first step's loss and terms agree (same weights, batch and kernels).
    const first = step();
    const mineFirst = { loss: first.loss.item(), ce: first.ce!.item(), sim: first.sim!.item(), align: first.align!.item() };
    for (const t of [first.loss, first.ce, first.sim, first.align]) t?.dispose();
    const pyFirst = (await py.call({ cmd: "first" })) as { loss: number; ce: number; sim: number; align: number };
    const terms = (x: typeof mineFirst) => `${x.loss.toFixed(6)} (CE ${x.ce.toFixed(6)}, sim ${x.sim.toFixed(6)}, align ${x.align.toFixed(6)})`;
    console.log(`first-step loss: MindsEye ${terms(mineFirst)}, PyTorch ${terms(pyFirst)}`);
    const second = mindseyeSteps(1).losses[0]!, pySecond = (await pySteps(1)).losses[0]!;
    console.log(`second-step loss (after one AdamW step): MindsEye ${second.toFixed(6)}, PyTorch ${pySecond.toFixed(6)}`);

    // 4. PyTorch at its best setting: 1 or all intra-op threads, with glibc's default allocator
    //    and then with MindsEye's allocator tuning (mallopt cannot be undone, so it goes last).
    const cores = availableParallelism();
    await pySteps(5); // the first steps are cold (allocations, page faults)
    let best = { threads: 1, allocator: "glibc default", ms: Infinity };
    for (const allocator of ["glibc default", "MindsEye tuning"]) {
      if (allocator !== "glibc default") await py.call({ cmd: "allocator", mmap: 32 << 20, trim: 1 << 30, topPad: 64 << 20 });
      for (const threads of [...new Set([1, cores])]) {
        await py.call({ cmd: "threads", threads });
        const ms = median((await pySteps(5)).ms);
        console.log(`PyTorch warm-up, torch.set_num_threads(${threads}), ${allocator} allocator: ${fmt(ms, 2)} ms/step`);
        if (ms < best.ms) best = { threads, allocator, ms };
      }
    }
    if (best.allocator === "glibc default") {
      // The tuning is in effect now and cannot be reverted in-process: restart the worker plain.
      py.close();
      py = new PythonWorker("train_ref.py", args.python);
      await py.call({ ...init, threads: best.threads });
      await pySteps(5);
    }
    await py.call({ cmd: "threads", threads: best.threads });
    mindseyeSteps(5); // warm-up

    // 5. Alternating rounds.
    const mine = emptySteps(), theirs = emptySteps();
    const add = (into: Steps, s: Steps) => { for (const k of ["ms", "forward", "backward", "optimizer"] as const) into[k].push(...s[k]); };
    const per = Math.max(1, Math.round(STEPS / ROUNDS));
    for (let r = 0; r < ROUNDS; r++) {
      add(mine, mindseyeSteps(per));
      add(theirs, await pySteps(per));
      console.log(`round ${r + 1}/${ROUNDS}: medians so far MindsEye ${fmt(median(mine.ms), 2)} ms, PyTorch ${fmt(median(theirs.ms), 2)} ms`);
    }
    const phases = (s: Steps) => `${fmt(median(s.forward), 2)} / ${fmt(median(s.backward), 2)} / ${fmt(median(s.optimizer), 2)}`;
    console.log(`forward + loss / backward / AdamW (+ freeing the step's tensors) medians: MindsEye ${phases(mine)} ms, PyTorch ${phases(theirs)} ms`);

    if (args.profile) {
      const profiler = new NativeProfiler();
      profiler.start("forward + loss (zero_grad included)");
      const r = step((phase) => profiler.mark(phase));
      profiler.stop();
      for (const t of [r.loss, r.ce, r.sim, r.align]) t?.dispose();
      console.log(`MindsEye native calls, one step (${fmt(profiler.totalMs, 2)} ms with timing on):\n${profiler.report(40)}`);
      const prof = await py.call({ cmd: "profile", rows: 40 });
      console.log(`PyTorch autograd profiler, one step (${fmt(prof.total_ms as number, 2)} ms with profiling on), by self CPU time:\n${String(prof.table)}\n${(prof.phases as string[]).map((l) => `  ${l}`).join("\n")}`);
    }
    py.close();
    for (const p of model.parameters()) p.dispose();
    for (const t of [inputIds, labels, attentionMask, targets]) t.dispose();

    const m = median(mine.ms), p = median(theirs.ms);
    const tokens = B * T;
    console.log(`median step: MindsEye ${fmt(m, 2)} ms (${fmt(tokens / (m / 1000), 0)} tokens/s), PyTorch ${fmt(p, 2)} ms (${fmt(tokens / (p / 1000), 0)} tokens/s) `
      + `with torch.set_num_threads(${best.threads}) and the ${best.allocator} allocator`);
    console.log(`latent step time ratio vs pytorch: ${(m / p).toFixed(3)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
