// `mindseye demo` — a one-minute smoke run of the engine: the engine's
// reference decoder learns to continue captions of the synthetic world's kind ("a small red
// circle left of a large blue square"), and the loss curve and a greedy sample are printed.
import { torch, optim, F, type Tensor } from "@mindseye/torch";
import { ReferenceDecoder } from "@mindseye/torch/testing";
import { mulberry32 } from "../util/random.js";

const SIZES = ["small", "large"], COLOURS = ["red", "green", "blue", "yellow"], SHAPES = ["circle", "square", "triangle"];
const RELATIONS = ["left of", "right of", "above", "below"];
const PAD = 0, IGNORE = -100;


function captions(n: number, seed: number): string[] {
  const r = mulberry32(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const obj = () => `a ${pick(SIZES)} ${pick(COLOURS)} ${pick(SHAPES)}`;
  return Array.from({ length: n }, () => `${obj()} ${pick(RELATIONS)} ${obj()} .`);
}

export interface DemoOptions { steps: number; seed: number; log: (line: string) => void }

export function runDemo(o: DemoOptions): { first: number; last: number } {
  torch.manualSeed(o.seed);
  const vocab = ["<pad>", ...new Set(captions(2000, o.seed).join(" ").split(" "))];
  const id = new Map(vocab.map((w, i) => [w, i]));
  const encode = (s: string) => s.split(" ").map((w) => id.get(w)!);
  const data = captions(o.steps * 32, o.seed + 1).map(encode);
  const seqLen = Math.max(...data.map((c) => c.length));
  const padded = data.map((c) => [...c, ...Array<number>(seqLen - c.length).fill(PAD)]);
  const model = new ReferenceDecoder({ vocabSize: vocab.length, width: 64, layers: 2, heads: 4, maxSeq: seqLen });
  const opt = new optim.AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const schedule = optim.schedules.warmupCosine({ warmupSteps: 20, totalSteps: o.steps });
  o.log(`reference decoder: ${model.numParameters().toLocaleString()} parameters, vocabulary ${vocab.length}, ${o.steps} steps of 32 captions`);

  const curve: number[] = [];
  const t0 = performance.now();
  for (let step = 0; step < o.steps; step++) {
    optim.schedules.applySchedule(opt, schedule, step);
    const loss = torch.scope(() => {
      const batch = torch.tensor(padded.slice(step * 32, step * 32 + 32), { dtype: "int64" }); // [32, T]
      const inputs = batch.slice(1, 0, -1);
      const targets = batch.slice(1, 1).maskedFill(batch.slice(1, 1).eq(PAD), IGNORE); // no loss on padding
      const logits = model.forward(inputs); // [32, T-1, V]
      const l = F.crossEntropy(logits.reshape(-1, vocab.length), targets.reshape(-1), { ignoreIndex: IGNORE });
      l.backward();
      optim.clipGradNorm(model.parameters(), 1.0);
      opt.step();
      opt.zeroGrad();
      return l;
    });
    curve.push(loss.item());
    loss.dispose();
    if ((step + 1) % Math.max(1, Math.floor(o.steps / 10)) === 0) {
      o.log(`step ${String(step + 1).padStart(4)}  loss ${curve[step]!.toFixed(4)}  ${bar(curve[step]!, curve[0]!)}`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  o.log(`${o.steps} steps in ${seconds.toFixed(1)} s (${((o.steps * 32 * seqLen) / seconds).toFixed(0)} tokens/s)`);

  // Greedy continuation of a prompt.
  const prompt = encode("a small red circle");
  const out = torch.noGrad(() => {
    const ids = [...prompt];
    while (ids.length < seqLen && vocab[ids[ids.length - 1]!] !== ".") {
      const next = torch.scope(() => {
        const logits: Tensor = model.forward(torch.tensor([ids], { dtype: "int64" }));
        return logits.select(1, ids.length - 1).argmax(-1).item();
      });
      ids.push(next);
    }
    return ids.map((i) => vocab[i]).join(" ");
  });
  o.log(`greedy sample: "${out}"`);
  return { first: curve[0]!, last: curve[curve.length - 1]! };
}

function bar(v: number, max: number): string {
  return "█".repeat(Math.max(1, Math.round((v / max) * 40)));
}
