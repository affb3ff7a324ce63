// Learning-rate schedules: values at hand-computable steps, agreement with Hugging Face's
// get_*_schedule_with_warmup formulas, applySchedule, and argument checks.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { torch, optim } from "../index.js";

const { warmupCosine, warmupLinear, warmupConstant, constant, applySchedule } = optim.schedules;

const near = (got: number, want: number, what: string): void =>
  assert.ok(Math.abs(got - want) < 1e-12, `${what}: got ${got}, expected ${want}`);

// transformers.optimization: _get_cosine_schedule_with_warmup_lr_lambda and the min-lr variant
// (factor · (1 - min_lr_rate) + min_lr_rate), transcribed.
function hfCosine(step: number, warmup: number, total: number, cycles = 0.5, minLrRate = 0): number {
  if (step < warmup) return step / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, total - warmup);
  const factor = Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
  return factor * (1 - minLrRate) + minLrRate;
}
// _get_linear_schedule_with_warmup_lr_lambda
function hfLinear(step: number, warmup: number, total: number): number {
  if (step < warmup) return step / Math.max(1, warmup);
  return Math.max(0, (total - step) / Math.max(1, total - warmup));
}

describe("warmupCosine", () => {
  it("warmup 10, total 110: 0 → 0, 5 → ½, 10 → 1, 35 → (1 + cos π/4)/2, 60 → ½, 110 → 0", () => {
    const s = warmupCosine({ warmupSteps: 10, totalSteps: 110 });
    near(s(0), 0, "step 0");
    near(s(1), 0.1, "step 1");
    near(s(5), 0.5, "mid-warmup");
    near(s(10), 1, "end of warmup");
    near(s(35), (1 + Math.SQRT1_2) / 2, "quarter of the decay");
    near(s(60), 0.5, "halfway");
    near(s(110), 0, "end");
  });

  it("minRatio lifts the floor: 60 → 0.1 + 0.9·½, 110 → 0.1; warmup is unchanged", () => {
    const s = warmupCosine({ warmupSteps: 10, totalSteps: 110, minRatio: 0.1 });
    near(s(5), 0.5, "mid-warmup");
    near(s(10), 1, "end of warmup");
    near(s(60), 0.55, "halfway");
    near(s(110), 0.1, "end");
  });

  it("cycles = 1 goes down and back up: 60 → 0, 110 → 1", () => {
    const s = warmupCosine({ warmupSteps: 10, totalSteps: 110, cycles: 1 });
    near(s(60), 0, "halfway");
    near(s(110), 1, "end");
  });

  it("matches HF's formula at every step, past the end too", () => {
    for (const [warmup, total, cycles, minRatio] of [[10, 110, 0.5, 0], [0, 7, 0.5, 0], [3, 3, 0.5, 0], [4, 50, 1.5, 0], [5, 40, 0.5, 0.2]] as const) {
      const s = warmupCosine({ warmupSteps: warmup, totalSteps: total, cycles, minRatio });
      for (let step = 0; step <= total + 10; step++) {
        near(s(step), hfCosine(step, warmup, total, cycles, minRatio), `warmup ${warmup}, total ${total}, cycles ${cycles}, minRatio ${minRatio}, step ${step}`);
      }
    }
  });

  it("no warmup starts at 1", () => {
    near(warmupCosine({ warmupSteps: 0, totalSteps: 10 })(0), 1, "step 0");
  });
});

describe("warmupLinear", () => {
  it("warmup 10, total 110: 0 → 0, 5 → ½, 10 → 1, 60 → ½, 110 → 0, beyond stays 0", () => {
    const s = warmupLinear({ warmupSteps: 10, totalSteps: 110 });
    near(s(0), 0, "step 0");
    near(s(5), 0.5, "mid-warmup");
    near(s(10), 1, "end of warmup");
    near(s(60), 0.5, "halfway");
    near(s(85), 0.25, "three quarters");
    near(s(110), 0, "end");
    near(s(500), 0, "past the end");
  });

  it("matches HF's formula at every step", () => {
    for (const [warmup, total] of [[10, 110], [0, 5], [4, 4], [1, 9]] as const) {
      const s = warmupLinear({ warmupSteps: warmup, totalSteps: total });
      for (let step = 0; step <= total + 3; step++) near(s(step), hfLinear(step, warmup, total), `warmup ${warmup}, total ${total}, step ${step}`);
    }
  });
});

describe("warmupConstant and constant", () => {
  it("warmup 4: 0, ¼, ½, ¾, then 1 for ever", () => {
    const s = warmupConstant({ warmupSteps: 4 });
    assert.deepEqual([0, 1, 2, 3, 4, 5, 1e6].map(s), [0, 0.25, 0.5, 0.75, 1, 1, 1]);
    assert.equal(warmupConstant({ warmupSteps: 0 })(0), 1);
    assert.deepEqual([0, 7, 1e9].map(constant), [1, 1, 1]);
  });
});

describe("argument checks", () => {
  it("negative or fractional warmup, total below warmup, and minRatio outside [0, 1] throw RangeError", () => {
    assert.throws(() => warmupCosine({ warmupSteps: -1, totalSteps: 10 }), /warmupSteps must be a non-negative integer, got -1/);
    assert.throws(() => warmupCosine({ warmupSteps: 2.5, totalSteps: 10 }), RangeError);
    assert.throws(() => warmupCosine({ warmupSteps: 10, totalSteps: 5 }), /totalSteps \(5\) must be an integer ≥ warmupSteps \(10\)/);
    assert.throws(() => warmupCosine({ warmupSteps: 1, totalSteps: NaN }), RangeError);
    assert.throws(() => warmupCosine({ warmupSteps: 1, totalSteps: 10, minRatio: 1.5 }), /minRatio must be in \[0, 1\], got 1.5/);
    assert.throws(() => warmupCosine({ warmupSteps: 1, totalSteps: 10, minRatio: -0.1 }), RangeError);
    assert.throws(() => warmupLinear({ warmupSteps: 3, totalSteps: 2 }), RangeError);
    assert.throws(() => warmupLinear({ warmupSteps: -2, totalSteps: 2 }), RangeError);
    assert.throws(() => warmupConstant({ warmupSteps: -1 }), /warmupSteps must be a non-negative integer, got -1/);
    assert.throws(() => warmupConstant({ warmupSteps: 0.5 }), RangeError);
  });
});

describe("applySchedule", () => {
  it("sets each group's lr to its initial lr × the factor, from the initial lr every time", () => {
    const a = torch.zeros([1], { requiresGrad: true }), b = torch.zeros([1], { requiresGrad: true });
    try {
      const opt = new optim.AdamW([{ params: [a] }, { params: [b], lr: 0.01 }], { lr: 0.1 });
      const s = warmupLinear({ warmupSteps: 10, totalSteps: 110 });
      applySchedule(opt, s, 5);
      near(opt.paramGroups[0]!.lr, 0.05, "group 0 at step 5");
      near(opt.paramGroups[1]!.lr, 0.005, "group 1 at step 5");
      applySchedule(opt, s, 60);
      near(opt.paramGroups[0]!.lr, 0.05, "group 0 at step 60");
      near(opt.paramGroups[1]!.lr, 0.005, "group 1 at step 60");
      applySchedule(opt, s, 10);
      assert.deepEqual(opt.paramGroups.map((g) => g.lr), [0.1, 0.01], "not compounded");
      assert.deepEqual(opt.paramGroups.map((g) => g.initialLr), [0.1, 0.01]);
      const sgd = new optim.SGD([a], { lr: 2 });
      applySchedule(sgd, warmupConstant({ warmupSteps: 4 }), 1);
      assert.equal(sgd.paramGroups[0]!.lr, 0.5);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
