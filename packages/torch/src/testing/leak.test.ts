// Leak tests: torch.scope must free every tensor a training step creates, so a long run holds a
// flat number of native tensors and a bounded resident set. Each 2,000-step run takes ~5 s on one
// Xeon core with MINDSEYE_NUM_THREADS=1 MINDSEYE_BLAS_THREADS=1.
import { test, type TestContext } from "node:test";
import { setImmediate } from "node:timers/promises";
import assert from "node:assert/strict";
import { torch, optim, type Tensor } from "../index.js";
import { ReferenceDecoder, type DecoderConfig } from "./decoder.js";

const CFG: DecoderConfig = { vocabSize: 64, width: 32, layers: 2, heads: 4, maxSeq: 16 };
const BATCH = 4;
const STEPS = 2000;
const WARMUP = 200; // allocator pools, JIT and optimizer slots settle first
const EVERY = 100;
const MAX_RSS_GROWTH = 30 * 2 ** 20; // bytes, first sample to last

test("scope: a tensor created in a scope and not returned is disposed; the returned one survives", () => {
  let inner: Tensor | undefined;
  const before = torch.memory().tensors;
  const kept = torch.scope(() => {
    inner = torch.ones([3]);
    return inner.mul(2);
  });
  assert.equal(inner!.disposed, true, "a tensor the scope did not return must be freed when it ends");
  assert.equal(kept.disposed, false, "the returned tensor must outlive the scope");
  assert.deepEqual(kept.tolist(), [2, 2, 2]);
  assert.equal(torch.memory().tensors, before + 1, "only the returned tensor stays live");
  kept.dispose();
  assert.equal(torch.memory().tensors, before);
});

interface Sample { step: number; tensors: number; bytes: number; rss: number }

/**
 * Trains a fresh ReferenceDecoder for STEPS AdamW steps, each inside torch.scope, sampling the
 * live tensor count, tensor storage and RSS every EVERY steps after WARMUP. With `yieldEachStep`
 * the loop awaits the event loop after every step, as a loop that awaits its data loader does.
 */
async function train(yieldEachStep: boolean): Promise<{ samples: Sample[]; seconds: number }> {
  torch.manualSeed(0);
  const gen = new torch.Generator(1);
  const model = new ReferenceDecoder(CFG);
  const opt = new optim.AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.1 });
  const gc = (globalThis as { gc?: () => void }).gc; // present only under node --expose-gc

  const samples: Sample[] = [];
  const started = performance.now();
  for (let step = 1; step <= STEPS; step++) {
    torch.scope(() => {
      // 1. a fresh batch [B, T] -> 2. zero grads -> 3. loss -> 4. backward -> 5. step
      const tokens = torch.randint(0, CFG.vocabSize, [BATCH, CFG.maxSeq], { generator: gen });
      const targets = torch.randint(0, CFG.vocabSize, [BATCH, CFG.maxSeq], { generator: gen });
      opt.zeroGrad();
      model.loss(tokens, targets).backward();
      opt.step();
    });
    if (yieldEachStep) await setImmediate();
    if (step >= WARMUP && step % EVERY === 0) {
      gc?.();
      const { tensors, bytes } = torch.memory();
      samples.push({ step, tensors, bytes, rss: process.memoryUsage().rss });
    }
  }
  return { samples, seconds: (performance.now() - started) / 1000 };
}

const mb = (b: number) => (b / 2 ** 20).toFixed(1);

function assertNoLeak(t: TestContext, { samples, seconds }: { samples: Sample[]; seconds: number }): void {
  const first = samples[0]!, last = samples.at(-1)!;
  t.diagnostic(`${STEPS} steps in ${seconds.toFixed(1)} s; ${samples.length} samples: ` +
    `${first.tensors} tensors, ${mb(first.bytes)} MB of tensor storage; RSS ${mb(first.rss)} -> ${mb(last.rss)} MB`);
  for (const s of samples) {
    assert.equal(s.tensors, first.tensors, `live tensors at step ${s.step}: ${s.tensors}, at step ${first.step}: ${first.tensors} (a step leaks tensors)`);
    assert.equal(s.bytes, first.bytes, `tensor storage at step ${s.step}: ${s.bytes} bytes, at step ${first.step}: ${first.bytes}`);
  }
  assert.ok(last.rss - first.rss < MAX_RSS_GROWTH,
    `RSS grew ${mb(last.rss - first.rss)} MB from step ${first.step} to ${last.step} (limit ${mb(MAX_RSS_GROWTH)} MB): ` +
    samples.map((s) => `${s.step}:${mb(s.rss)}`).join(" "));
}

// Runs first, on a clean heap. If only the synchronous test below fails, native memory is waiting
// on work the event loop does (N-API finalizers of collected tensor wrappers run from it), not
// lost for good.
test(`leak: ${STEPS} AdamW steps that await the event loop each step hold a flat tensor count and bounded RSS`, async (t) => {
  assertNoLeak(t, await train(true));
});

test(`leak: ${STEPS} AdamW steps in a synchronous loop, each in torch.scope, hold a flat tensor count and bounded RSS`, async (t) => {
  assertNoLeak(t, await train(false));
});
