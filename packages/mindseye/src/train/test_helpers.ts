// A tiny training task shared by the trainer's tests and their child processes
// (trainer_child.ts): a one-layer decoder learning 8-token sequences that follow a fixed rule.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, nn, F, type Tensor } from "@mindseye/torch";
import { ReferenceDecoder } from "@mindseye/torch/testing";
import { DataLoader, type Dataset } from "../data/loader.js";
import type { TrainTask } from "./trainer.js";

export const CFG = { vocabSize: 32, width: 16, layers: 1, heads: 2, maxSeq: 8 };
export const BATCH_SIZE = 4;

/** Sequences of 8 tokens following a fixed rule, so the loss can fall. */
const sequences: Dataset<number[]> = {
  length: 64,
  get: (i) => Array.from({ length: 8 }, (_, t) => (i * 3 + t * 5) % 32),
};

export interface TaskOptions {
  /** Add N(0, 0.1) noise to the logits: the loss then depends on the RNG, which an exact resume must restore. */
  noisy?: boolean;
  /** From this call of step() on, the loss is multiplied by NaN. */
  poison?: number;
  /** From this call of step() on, the loss is multiplied by this factor (a gradient blow-up). */
  blowUp?: { call: number; factor: number };
  /** At this one call of step(), the loss is multiplied by this factor (a single spike). */
  spike?: { call: number; factor: number };
}

export function makeTask(opts: TaskOptions = {}): TrainTask<{ tokens: Tensor }> & { model: ReferenceDecoder } {
  torch.manualSeed(123); // identical initial weights for every run of a test
  const model = new ReferenceDecoder(CFG);
  const loader = new DataLoader(sequences, { batchSize: BATCH_SIZE, seed: 9, collate: (recs: number[][]) => ({ tokens: torch.tensor(recs, { dtype: "int64" }) }) });
  let calls = 0;
  return {
    model,
    loader: loader as DataLoader<unknown, { tokens: Tensor }>,
    step: ({ tokens }) => {
      calls += 1;
      const inputs = tokens.slice(1, 0, -1), targets = tokens.slice(1, 1);
      let logits = model.forward(inputs);
      if (opts.noisy) logits = logits.add(torch.randn(logits.shape).mul(0.1));
      let loss = F.crossEntropy(logits.reshape(-1, CFG.vocabSize), targets.reshape(-1));
      if (opts.poison !== undefined && calls >= opts.poison) loss = loss.mul(NaN);
      if (opts.blowUp !== undefined && calls >= opts.blowUp.call) loss = loss.mul(opts.blowUp.factor);
      if (opts.spike !== undefined && calls === opts.spike.call) loss = loss.mul(opts.spike.factor);
      return { loss, metrics: { tokens: targets.numel() } };
    },
  };
}

export function tempRun(): string {
  return mkdtempSync(join(tmpdir(), "mindseye-train-"));
}

export const free = (m: nn.Module) => m.parameters().forEach((p) => p.dispose());
