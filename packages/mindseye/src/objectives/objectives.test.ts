// Each expected value below is worked out by hand in the comment beside it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch, type Tensor } from "@mindseye/torch";
import { gradcheck } from "@mindseye/torch/testing";
import {
  parsePool, pooledCount, poolFeatures, poolLatents, instanceSimilarity, normalizeTargets, targetStats, infonce, siglip,
  nextTokenCrossEntropy, IGNORE_INDEX, latentObjective, collapseStats, imageWordLoss, type ObjectiveConfig,
} from "./index.js";

const T = (x: number[] | number[][] | number[][][]) => torch.tensor(x);
const close = (got: number, want: number, tol = 1e-5, what = "") => assert.ok(Math.abs(got - want) <= tol, `${what} got ${got}, want ${want}`);
const vals = (t: Tensor) => Array.from(t.toFloat64Values());
const scoped = (name: string, fn: () => void) => test(name, () => torch.scope(fn));

scoped("pooling: cls, mean, grid:K (row-major cells) and all", () => {
  // 1 class token + 4 patches on a 2×2 grid, D = 1: patches 1, 2 / 3, 4
  const f = T([[[10], [1], [2], [3], [4]]]); // [1, 5, 1]
  assert.deepEqual(vals(poolFeatures(f, "cls", { hasClassToken: true })), [10]);
  assert.deepEqual(vals(poolFeatures(f, "mean", { hasClassToken: true })), [2.5]);
  assert.deepEqual(vals(poolFeatures(f, "all", { hasClassToken: true })), [1, 2, 3, 4]);
  assert.deepEqual(vals(poolFeatures(f, "grid:1", { hasClassToken: true })), [2.5]);
  assert.deepEqual(vals(poolFeatures(f, "grid:4", { hasClassToken: true })), [1, 2, 3, 4]);
  // 4×4 grid of values r*4+c pooled to 2×2: cell (0,0) = mean(0,1,4,5) = 2.5, (0,1) = 4.5, (1,0) = 10.5, (1,1) = 12.5
  const g = torch.arange(16).float().reshape(1, 16, 1);
  assert.deepEqual(vals(poolFeatures(g, "grid:4", { hasClassToken: false })), [2.5, 4.5, 10.5, 12.5]);
  assert.deepEqual(poolFeatures(torch.zeros([2, 16, 3]), "grid:4", { hasClassToken: false }).shape, [2, 4, 3]);
  assert.deepEqual(vals(poolLatents(T([[[1, 2], [3, 4]]]))), [2, 3]);
  assert.equal(pooledCount("grid:9", 196), 9);
  assert.equal(pooledCount("all", 196), 196);
  assert.throws(() => poolFeatures(g, "cls", { hasClassToken: false }), /no class token/);
  assert.throws(() => parsePool("grid:5"), /perfect square/);
  assert.throws(() => parsePool("max"), /unknown pooling "max"/);
  assert.throws(() => poolFeatures(torch.zeros([1, 6, 2]), "grid:4", { hasClassToken: false }), /square grid/);
});

scoped("instance similarity: cosine, l2, smooth_l1 by hand", () => {
  const pred = T([[[1, 0], [0, 2]]]); // [1, 2, 2]
  const target = T([[[1, 0], [1, 0]]]);
  // cos = 1 and 0 -> mean(1 − cos) = (0 + 1) / 2 = 0.5
  close(instanceSimilarity(pred, target, "cosine").item(), 0.5);
  // squared errors 0, 0, 1, 4 -> mean 1.25
  close(instanceSimilarity(pred, target, "l2").item(), 1.25);
  // |d| = 0, 0, 1, 2 with beta 1: 0, 0, 0.5·1², 2 − 0.5 = 1.5 -> mean 0.5
  close(instanceSimilarity(pred, target, "smooth_l1").item(), 0.5);
  assert.throws(() => instanceSimilarity(pred, T([[[1, 0]]]), "l2"), /differ in shape/);
});

scoped("targets never carry gradient, and normalisation is per latent", () => {
  const pred = T([[[1, 2]]]).requiresGrad_();
  const target = T([[[3, 5]]]).requiresGrad_();
  instanceSimilarity(pred, target, "l2").backward();
  assert.ok(pred.grad !== null);
  assert.equal(target.grad, null);
  // layernorm of [3, 5]: mean 4, biased var 1 -> [−1, 1] (eps 1e-6 negligible); l2: [3, 5]/√34
  const ln = vals(normalizeTargets(T([[[3, 5]]]), "layernorm"));
  close(ln[0]!, -1, 1e-5); close(ln[1]!, 1, 1e-5);
  const l2 = vals(normalizeTargets(T([[[3, 4]]]), "l2"));
  close(l2[0]!, 0.6); close(l2[1]!, 0.8);
  assert.equal(normalizeTargets(target, "none").requiresGrad, false);
});

scoped("standardize: the training targets' mean and std per latent and dimension remove what every target shares", () => {
  // Two latents of D=2 for three images; every image shares a large offset (+100) in dimension 0.
  const z = T([[[101, 1], [0, 2]], [[103, 3], [0, 4]], [[105, 5], [0, 6]]]); // [3, 2, 2]
  const stats = targetStats(z);
  assert.deepEqual(vals(stats.mean), [103, 3, 0, 4]);
  close(vals(stats.std)[0]!, Math.sqrt(8 / 3)); // population std over the images
  assert.ok(vals(stats.std)[2]! > 0, "a constant dimension gets a floor, not a division by 0");
  const x = normalizeTargets(z, "standardize", stats);
  for (const [i, m] of vals(x.mean([0])).entries()) close(m, 0, 1e-5, `mean ${i}`);
  close(vals(x.select(0, 0))[0]!, -Math.sqrt(3 / 2), 1e-5); // (101 − 103) / √(8/3)
  assert.throws(() => normalizeTargets(z, "standardize"), /needs the training targets' mean and std/);
});

scoped("InfoNCE by hand: orthogonal matched pairs", () => {
  // p = t = identity rows (B = 2): cos matrix = I; with τ = 1 each row's CE = −log(e/(e+1)) = log(1 + e^−1)
  const p = T([[1, 0], [0, 1]]);
  const want = Math.log(1 + Math.exp(-1));
  close(infonce(p, p, 1).item(), want);
  // τ = 0.5 doubles the logits: log(1 + e^−2)
  close(infonce(p, p, 0.5).item(), Math.log(1 + Math.exp(-2)));
  // a learned temperature (tensor) gets a gradient
  const tau = torch.tensor([1]).requiresGrad_();
  infonce(p, p, tau).backward();
  assert.ok(tau.grad !== null && tau.grad.item() !== 0);
});

scoped("SigLIP by hand: orthogonal matched pairs", () => {
  // logits = scale·I + bias; with scale 1, bias 0: diagonal −log σ(1), off-diagonal −log σ(−0) = log 2
  // per row: −log σ(1) + log 2 -> averaged over rows: same
  const p = T([[1, 0], [0, 1]]);
  const want = Math.log(1 + Math.exp(-1)) + Math.log(2);
  close(siglip(p, p, 1, 0).item(), want);
  // scale 10, bias −10: diagonal −log σ(0) = log 2, off-diagonal −log σ(10) = log(1 + e^−10)
  close(siglip(p, p, 10, -10).item(), Math.log(2) + Math.log(1 + Math.exp(-10)), 1e-6);
});

scoped("image-word loss: each token's words through the word embeddings, by hand; gradcheck", () => {
  // One token [1, 0]; word embeddings [1, 0], [0, 1], [0, 0] -> logits 1, 0, 0, log Z = log(e + 2).
  // Its words 0 and 1: ((log Z − 1) + log Z) / 2.
  const logZ = Math.log(Math.E + 2);
  const embedding = T([[1, 0], [0, 1], [0, 0]]);
  close(imageWordLoss(T([[[1, 0]]]), embedding, torch.tensor([[[0, 1]]], { dtype: "int64" })).item(), (logZ - 1 + logZ) / 2, 1e-6);
  // A token that is its word's embedding, scaled up, costs ~0; the same token asked for another word costs a lot.
  const words = torch.tensor([[[1], [0]]], { dtype: "int64" }); // [1, 2, 1]
  assert.ok(imageWordLoss(T([[[0, 20], [20, 0]]]), embedding, words).item() < 1e-6);
  assert.ok(imageWordLoss(T([[[20, 0], [0, 20]]]), embedding, words).item() > 10);
  assert.throws(() => imageWordLoss(T([[[1, 0]]]), embedding, torch.tensor([[[0], [1]]], { dtype: "int64" })), /1×1 image tokens, words for 1×2/);
  const gen = new torch.Generator(3);
  const r = (shape: number[]) => torch.randn(shape, { generator: gen, dtype: "float64" }).requiresGrad_();
  gradcheck((tokens, emb) => imageWordLoss(tokens, emb, torch.tensor([[[0, 2], [1, 1]], [[2, 2], [0, 1]]], { dtype: "int64" })), [r([2, 2, 3]), r([4, 3])]);
});

scoped("next-token cross-entropy shifts by one and skips ignored labels", () => {
  // V = 2, uniform logits everywhere -> every counted token costs log 2
  const logits = torch.zeros([1, 3, 2]);
  close(nextTokenCrossEntropy(logits, torch.tensor([[0, 1, 1]], { dtype: "int64" })).item(), Math.log(2));
  // position 0 predicts label[1], position 1 predicts label[2]. Make position 0 confident of 1:
  // logits [0, 10] -> CE = log(1 + e^−10); position 1 uniform (log 2) but its label is ignored.
  const l2 = T([[[0, 10], [0, 0], [5, 5]]]);
  const labels = torch.tensor([[7, 1, IGNORE_INDEX]], { dtype: "int64" });
  close(nextTokenCrossEntropy(l2, labels).item(), Math.log(1 + Math.exp(-10)), 1e-6);
});

const CFG: ObjectiveConfig = { lambdaNt: 1, lambdaSim: 2, lambdaAlign: 0.5, similarity: "l2", targetNorm: "none", alignment: "infonce", smoothL1Beta: 1 };

scoped("the combined loss is λ-weighted and returns every term; λ = 0 skips a term", () => {
  const logits = torch.zeros([2, 2, 2]);
  const labels = torch.tensor([[0, 1], [0, 0]], { dtype: "int64" });
  const pred = T([[[1, 0]], [[0, 1]]]), targets = T([[[1, 0]], [[0, 3]]]);
  const r = latentObjective(CFG, { logits, labels, pred, targets }, { temperature: 1, scale: 10, bias: -10 });
  // ce = log 2; sim (l2) = mean(0, 0, 0, 4) = 1; align = InfoNCE of orthogonal pairs at τ=1 = log(1 + e^−1)
  const ce = Math.log(2), sim = 1, al = Math.log(1 + Math.exp(-1));
  close(r.ce!.item(), ce); close(r.sim!.item(), sim); close(r.align!.item(), al);
  close(r.loss.item(), ce + 2 * sim + 0.5 * al);
  const control = latentObjective({ ...CFG, lambdaSim: 0, lambdaAlign: 0 }, { logits, labels, pred: null, targets: null }, { temperature: 1, scale: 1, bias: 0 });
  assert.equal(control.sim, null); assert.equal(control.align, null);
  close(control.loss.item(), ce);
  assert.throws(() => latentObjective(CFG, { logits, labels, pred: null, targets: null }, { temperature: 1, scale: 1, bias: 0 }), /predictions or targets are missing/);
});

scoped("collapse monitors: collapsed vs spread predictions", () => {
  // identical rows: std 0, effective rank 0 (no spread at all), cosine 1
  const same = collapseStats(T([[1, 2], [1, 2], [1, 2]]));
  close(same.stdMean, 0); close(same.meanPairwiseCosine, 1);
  assert.equal(same.effectiveRank, 0);
  // ±e1, ±e2: centred rows are the same; singular values √2, √2 -> p = (½, ½) -> rank e^{ln 2} = 2;
  // pairwise cosines: each row has one opposite (−1) and two orthogonal (0) -> mean −1/3
  const spread = collapseStats(T([[1, 0], [-1, 0], [0, 1], [0, -1]]));
  close(spread.effectiveRank, 2, 1e-5);
  close(spread.meanPairwiseCosine, -1 / 3);
  // std per dim: values (1, −1, 0, 0) -> unbiased var = 2/3 -> std √(2/3), both dims
  close(spread.stdMean, Math.sqrt(2 / 3)); close(spread.stdMin, Math.sqrt(2 / 3));
  assert.throws(() => collapseStats(T([[1, 2]])), /at least 2 samples/);
});

scoped("gradcheck: every latent loss's gradient matches finite differences (float64)", () => {
  const gen = new torch.Generator(5);
  const r = (shape: number[]) => torch.randn(shape, { generator: gen, dtype: "float64" }).requiresGrad_();
  const target = torch.randn([3, 2, 4], { generator: gen, dtype: "float64" });
  for (const kind of ["cosine", "l2", "smooth_l1"] as const) {
    gradcheck((p) => instanceSimilarity(p, target, kind, { beta: 0.5 }), [r([3, 2, 4])]);
  }
  const t = torch.randn([4, 3], { generator: gen, dtype: "float64" });
  // the temperature, SigLIP's scale and bias are learnable: their gradients too
  gradcheck((p, tau) => infonce(p, t, tau), [r([4, 3]), torch.tensor([0.3], { dtype: "float64" }).requiresGrad_()]);
  gradcheck((p, scale, bias) => siglip(p, t, scale, bias), [r([4, 3]), torch.tensor([2], { dtype: "float64" }).requiresGrad_(), torch.tensor([-1], { dtype: "float64" }).requiresGrad_()]);
  gradcheck((p) => poolLatents(p), [r([2, 3, 2])]);
});
