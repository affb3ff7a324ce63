// The latent-pretraining objective L = λ_nt·CE + λ_sim·S + λ_align·A (DESIGN.md §1.3), with
// every term returned for logging. A λ of 0 skips its term's computation entirely (the text
// control arm sets λ_sim = λ_align = 0).
import type { Tensor } from "@mindseye/torch";
import { nextTokenCrossEntropy } from "./next_token.js";
import { instanceSimilarity, normalizeTargets, type SimilarityKind, type TargetNorm, type TargetStats } from "./instance.js";
import { infonce, siglip, type AlignmentKind } from "./alignment.js";
import { poolLatents } from "./pooling.js";

export interface ObjectiveConfig {
  lambdaNt: number;
  lambdaSim: number;
  lambdaAlign: number;
  similarity: SimilarityKind;
  targetNorm: TargetNorm;
  alignment: AlignmentKind;
  /** Smooth-L1 beta. */
  smoothL1Beta: number;
  /** The training targets' mean and std, for targetNorm "standardize". */
  targetStats?: TargetStats;
}

/** Learnable or fixed batch-term parameters: InfoNCE temperature, SigLIP scale and bias. */
export interface AlignmentParams {
  temperature: number | Tensor;
  scale: number | Tensor;
  bias: number | Tensor;
}

export interface ObjectiveTerms {
  loss: Tensor;
  ce: Tensor | null;
  sim: Tensor | null;
  align: Tensor | null;
}

/**
 * logits [B, T, V] and labels [B, T] for the text; pred [B, K, D] and targets [B, K, D] for the
 * latents (pred and targets may be null when λ_sim = λ_align = 0).
 */
export function latentObjective(
  cfg: ObjectiveConfig,
  inputs: { logits: Tensor; labels: Tensor; pred: Tensor | null; targets: Tensor | null },
  align: AlignmentParams,
): ObjectiveTerms {
  const ce = cfg.lambdaNt !== 0 ? nextTokenCrossEntropy(inputs.logits, inputs.labels) : null;
  let sim: Tensor | null = null, al: Tensor | null = null;
  if (cfg.lambdaSim !== 0 || (cfg.lambdaAlign !== 0 && cfg.alignment !== "none")) {
    if (!inputs.pred || !inputs.targets) throw new Error("latent objective: λ_sim or λ_align is non-zero but predictions or targets are missing");
    const z = normalizeTargets(inputs.targets, cfg.targetNorm, cfg.targetStats);
    if (cfg.lambdaSim !== 0) sim = instanceSimilarity(inputs.pred, z, cfg.similarity, { beta: cfg.smoothL1Beta });
    if (cfg.lambdaAlign !== 0 && cfg.alignment !== "none") {
      const p = poolLatents(inputs.pred), t = poolLatents(z);
      al = cfg.alignment === "infonce" ? infonce(p, t, align.temperature) : siglip(p, t, align.scale, align.bias);
    }
  }
  let loss: Tensor | null = null;
  for (const [lambda, term] of [[cfg.lambdaNt, ce], [cfg.lambdaSim, sim], [cfg.lambdaAlign, al]] as const) {
    if (term === null) continue;
    const weighted = term.mul(lambda);
    loss = loss === null ? weighted : loss.add(weighted);
  }
  if (loss === null) throw new Error("latent objective: every λ is 0, nothing to train");
  return { loss, ce, sim, align: al };
}

/** Plain numbers of the terms, for metrics logs. */
export function termValues(t: ObjectiveTerms): Record<string, number> {
  const out: Record<string, number> = { loss: t.loss.item() };
  if (t.ce) out.ce = t.ce.item();
  if (t.sim) out.sim = t.sim.item();
  if (t.align) out.align = t.align.item();
  return out;
}

