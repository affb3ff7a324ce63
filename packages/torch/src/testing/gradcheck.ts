// Finite-difference gradient checking, as torch.autograd.gradcheck: the gradients autograd
// computes for fn are compared, element by element, with central differences
//   ∂L/∂x_j ≈ (L(x + eps·e_j) − L(x − eps·e_j)) / 2·eps
// in float64. L is each output element in turn when the output is small (the full Jacobian,
// one vector-Jacobian product per output element), or Σ out·w with fixed random weights w
// otherwise (one backward pass; a wrong gradient survives the projection only by chance).
//
//   const a = torch.randn([2, 3], { dtype: "float64" }).requiresGrad_();
//   const b = torch.randn([3, 2], { dtype: "float64" }).requiresGrad_();
//   gradcheck((x, y) => x.matmul(y), [a, b]); // throws on the first mismatch
import { Tensor } from "../tensor.js";
import { randn, tensor } from "../creation.js";
import { grad, noGrad } from "../autograd.js";
import { scope } from "../scope.js";
import { Generator } from "../random.js";

export interface GradcheckOptions {
  /** Finite-difference step. */
  eps?: number;
  /** Absolute tolerance of |analytic − numeric|. */
  atol?: number;
  /** Relative tolerance, scaled by |numeric|. */
  rtol?: number;
  /** Outputs with at most this many elements are checked against the full Jacobian. */
  fullJacobianMaxOutputs?: number;
  /** Seed of the projection weights used for larger outputs. */
  seed?: number;
}

export interface GradcheckReport {
  /** Indices (into `inputs`) of the inputs whose gradients were checked. */
  checkedInputs: number[];
  /** Analytic/numeric pairs compared. */
  comparisons: number;
  /** "jacobian" (every output element) or "projection" (Σ out·w). */
  mode: "jacobian" | "projection";
  /** Largest |analytic − numeric| seen. */
  maxAbsError: number;
}

/**
 * Checks fn's gradients with respect to every input that requires grad (those must be float64;
 * other inputs, e.g. int64 indices, are passed through unchanged). Throws an Error naming the
 * input, element (and output element, in Jacobian mode) and both values at the first mismatch.
 */
export function gradcheck(fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckReport {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-3;
  const maxFull = opts.fullJacobianMaxOutputs ?? 16;

  const checked: number[] = [];
  inputs.forEach((x, i) => {
    if (!x.requiresGrad) return;
    if (x.dtype !== "float64") throw new TypeError(`gradcheck: input ${i} requires grad but is ${x.dtype}; use float64 inputs (finite differences need the precision)`);
    checked.push(i);
  });
  if (checked.length === 0) throw new Error("gradcheck: no input requires grad; call requiresGrad_() on the inputs to check");

  return scope(() => {
    // 1. Analytic: rows of the Jacobian (or one projected row), per checked input.
    const out = fn(...inputs);
    if (out.dtype !== "float64") throw new TypeError(`gradcheck: fn returned a ${out.dtype} tensor; expected float64 (are all inputs float64?)`);
    if (!out.requiresGrad) throw new Error("gradcheck: fn's output does not require grad (it does not depend on any input through autograd)");
    const m = out.numel();
    const mode: GradcheckReport["mode"] = m <= maxFull ? "jacobian" : "projection";
    const weights = mode === "projection" ? randn(out.shape, { dtype: "float64", generator: new Generator(opts.seed ?? 0) }) : null;
    const wValues = weights ? weights.toFloat64Values() : null;
    const rows = mode === "jacobian" ? m : 1;
    // analytic[r][c] = d(L_r)/d(input checked[c]) as a flat Float64Array
    const analytic: Float64Array[][] = [];
    for (let r = 0; r < rows; r++) {
      const target = weights ? out.mul(weights).sum() : out.reshape(-1).select(0, r);
      const gs = grad(target, checked.map((i) => inputs[i]!), { allowUnused: true, retainGraph: r < rows - 1 });
      analytic.push(gs.map((g, c) => (g === null ? new Float64Array(inputs[checked[c]!]!.numel()) : g.toFloat64Values())));
    }

    // 2. Numeric: perturb one element at a time, evaluating fn without a graph.
    const evalFlat = (xs: Tensor[]): Float64Array => scope(() => {
      const y = fn(...xs).toFloat64Values();
      if (y.length !== m) throw new Error(`gradcheck: fn returned ${y.length} elements for perturbed inputs, ${m} before`);
      return y;
    });
    const project = (y: Float64Array, r: number): number => {
      if (!wValues) return y[r]!;
      let s = 0;
      for (let k = 0; k < m; k++) s += y[k]! * wValues[k]!;
      return s;
    };

    let comparisons = 0;
    let maxAbsError = 0;
    noGrad(() => {
      checked.forEach((i, c) => {
        const x = inputs[i]!;
        const base = x.toFloat64Values();
        const shape = x.shape;
        for (let j = 0; j < base.length; j++) {
          const at = (delta: number): Float64Array => scope(() => {
            const v = Float64Array.from(base);
            v[j] = v[j]! + delta;
            const xs = inputs.slice();
            xs[i] = tensor(v, { shape });
            return evalFlat(xs);
          });
          const plus = at(eps);
          const minus = at(-eps);
          for (let r = 0; r < rows; r++) {
            const numeric = (project(plus, r) - project(minus, r)) / (2 * eps);
            const a = analytic[r]![c]![j]!;
            const err = Math.abs(a - numeric);
            maxAbsError = Math.max(maxAbsError, err);
            comparisons++;
            if (!(err <= atol + rtol * Math.abs(numeric))) {
              const where = mode === "jacobian" ? `, output element ${r}` : " (projected output)";
              throw new Error(
                `gradcheck: gradient mismatch for input ${i} (shape [${shape.join(", ")}]), element ${j}${where}: ` +
                  `analytic ${a} vs numeric ${numeric} (|diff| ${err.toExponential(3)} > atol ${atol} + rtol ${rtol} · |numeric|)`,
              );
            }
          }
        }
      });
    });
    return { checkedInputs: checked, comparisons, mode, maxAbsError };
  });
}
