// Linear read-outs of the LM's hidden states (DESIGN.md §6).
//
//   probe    multinomial logistic regression h -> attribute value, fitted on training captions and
//            scored on held-out test captions: how linearly decodable an attribute of the scene is
//            from what the LM makes of its caption. The most direct test that latent pretraining
//            taught the LM visual structure is the probe's accuracy before (the base VLM) and after.
//   readout  ridge regression h -> the frozen encoder's latents z (flattened K×D), fitted on training
//            captions; its predictions on test captions are ranked like imagined latents. It gives
//            every model an alignment score, including those without a latent head.
//
// Features are standardised with the training set's mean and std. The probe is convex and starts
// from zero weights, so it needs no seed: full-batch AdamW for a fixed number of steps.
import { torch, F, optim, type Tensor } from "@mindseye/torch";
import { Matrix, solve } from "ml-matrix";

export const PROBE = { steps: 300, lr: 0.05, weightDecay: 1e-3 } as const;
/** Ridge penalty per training sample (λ·n added to the diagonal of HᵀH of standardised features). */
export const READOUT_RIDGE = 1e-2;

/** Standardises train and test rows [n, H] with the training rows' mean and std. */
function standardise(train: Tensor, test: Tensor): [Tensor, Tensor] {
  const mean = train.mean(0, { keepdim: true }), std = train.std(0, { keepdim: true }).clampMin(1e-6);
  return [train.sub(mean).div(std), test.sub(mean).div(std)];
}

export interface ProbeResult {
  /** Held-out accuracy. */
  accuracy: number;
  /** Accuracy of always answering the training set's most common value. */
  majority: number;
  /** Values the attribute takes in training. */
  classes: number;
  train: number;
  test: number;
}

/**
 * Fits a logistic-regression probe on (trainX [n, H], trainY) and scores it on held-out
 * (testX, testY). Test values unseen in training count as wrong.
 * ```ts
 * linearProbe(hTrain, colorsTrain, hTest, colorsTest).accuracy; // 0.83
 * ```
 */
export function linearProbe(trainX: Tensor, trainY: readonly string[], testX: Tensor, testY: readonly string[]): ProbeResult {
  const classes = [...new Set(trainY)].sort();
  const index = new Map(classes.map((c, i) => [c, i]));
  const counts = classes.map((c) => trainY.filter((y) => y === c).length);
  const top = classes[counts.indexOf(Math.max(...counts))]!;
  const majority = testY.filter((y) => y === top).length / testY.length;
  const H = trainX.shape[1]!;
  const w = torch.zeros([H, classes.length], { requiresGrad: true }), b = torch.zeros([classes.length], { requiresGrad: true });
  try {
    const predicted = torch.noGrad(() => torch.scope(() => {
      const [xs, xt] = standardise(trainX.float(), testX.float());
      const y = torch.tensor(trainY.map((v) => index.get(v)!), { dtype: "int64" });
      const opt = new optim.AdamW([w, b], { lr: PROBE.lr, weightDecay: PROBE.weightDecay });
      for (let step = 0; step < PROBE.steps; step++) {
        torch.enableGrad(() => torch.scope(() => F.crossEntropy(xs.matmul(w).add(b), y).backward()));
        opt.step();
        opt.zeroGrad();
      }
      return Array.from(xt.matmul(w).add(b).argmax(1).toTypedArray(), Number);
    }));
    const correct = predicted.filter((p, i) => classes[p] === testY[i]).length;
    return { accuracy: correct / testY.length, majority, classes: classes.length, train: trainY.length, test: testY.length };
  } finally {
    w.dispose();
    b.dispose();
  }
}

/**
 * Ridge regression from standardised hidden states to targets: fitted on (trainX [n, H],
 * trainZ [n, K, D]), applied to testX. Returns the predicted test latents [m, K, D].
 * ```ts
 * const zHat = ridgeReadout(hTrain, zTrain, hTest); // then scoreRetrieval(zHat, gallery, truth)
 * ```
 */
export function ridgeReadout(trainX: Tensor, trainZ: Tensor, testX: Tensor, ridge = READOUT_RIDGE): Tensor {
  const [n, K, D] = trainZ.shape as [number, number, number];
  return torch.noGrad(() => torch.scope(() => {
    const [xs, xt] = standardise(trainX.double(), testX.double());
    const ones = (m: number) => torch.ones([m, 1], { dtype: "float64" });
    const a = torch.cat([xs, ones(n)], 1), at = torch.cat([xt, ones(xt.shape[0]!)], 1); // with an intercept column
    const H1 = a.shape[1]!;
    const gram = a.t().matmul(a).add(torch.eye(H1, H1, { dtype: "float64" }).mul(ridge * n)); // [H+1, H+1]
    const rhs = a.t().matmul(trainZ.double().reshape(n, K * D)); // [H+1, K·D]
    const w = solve(toMatrix(gram), toMatrix(rhs)); // (AᵀA + λnI)⁻¹ AᵀZ
    const wt = torch.tensor(Float64Array.from(w.to1DArray()), { dtype: "float64" }).reshape(H1, K * D);
    return at.matmul(wt).reshape(-1, K, D).float();
  }));
}

function toMatrix(t: Tensor): Matrix {
  const [r, c] = t.shape as [number, number];
  const v = t.contiguous().toFloat64Values();
  return new Matrix(Array.from({ length: r }, (_, i) => Array.from(v.subarray(i * c, (i + 1) * c))));
}
