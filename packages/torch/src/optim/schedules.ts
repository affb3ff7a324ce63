// Learning-rate schedules as pure functions of the step: each returns the multiplier of the
// base learning rate (as torch.optim.lr_scheduler.LambdaLR and HF's get_*_schedule_with_warmup).
import type { Optimizer } from "./optimizer.js";

export type Schedule = (step: number) => number;

/** Linear warmup from 0 to 1 over warmupSteps, then cosine decay to minRatio at totalSteps. */
export function warmupCosine(o: { warmupSteps: number; totalSteps: number; minRatio?: number; cycles?: number }): Schedule {
  const { warmupSteps, totalSteps } = o;
  const minRatio = o.minRatio ?? 0, cycles = o.cycles ?? 0.5;
  check(warmupSteps, totalSteps);
  if (!(minRatio >= 0 && minRatio <= 1)) throw new RangeError(`schedule: minRatio must be in [0, 1], got ${minRatio}`);
  return (step) => {
    if (step < warmupSteps) return step / Math.max(1, warmupSteps);
    const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
    const cosine = Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    return minRatio + (1 - minRatio) * cosine;
  };
}

/** Linear warmup, then linear decay to 0 at totalSteps. */
export function warmupLinear(o: { warmupSteps: number; totalSteps: number }): Schedule {
  check(o.warmupSteps, o.totalSteps);
  return (step) => {
    if (step < o.warmupSteps) return step / Math.max(1, o.warmupSteps);
    return Math.max(0, (o.totalSteps - step) / Math.max(1, o.totalSteps - o.warmupSteps));
  };
}

/** Linear warmup, then constant. */
export function warmupConstant(o: { warmupSteps: number }): Schedule {
  checkWarmup(o.warmupSteps);
  return (step) => (step < o.warmupSteps ? step / Math.max(1, o.warmupSteps) : 1);
}

export const constant: Schedule = () => 1;

/** Sets every group's lr to its initial lr × schedule(step). */
export function applySchedule(opt: Optimizer<{ lr: number }>, schedule: Schedule, step: number): void {
  const m = schedule(step);
  for (const g of opt.paramGroups) g.lr = g.initialLr * m;
}

function check(warmup: number, total: number): void {
  checkWarmup(warmup);
  if (!(Number.isInteger(total) && total >= warmup)) throw new RangeError(`schedule: totalSteps (${total}) must be an integer ≥ warmupSteps (${warmup})`);
}

function checkWarmup(warmup: number): void {
  if (!(Number.isInteger(warmup) && warmup >= 0)) throw new RangeError(`schedule: warmupSteps must be a non-negative integer, got ${warmup}`);
}
