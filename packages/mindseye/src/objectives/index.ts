// Objectives: pure functions of tensors (STYLE.md §4), each tested against hand-worked values.
export { parsePool, pooledCount, poolFeatures, poolLatents, type PoolSpec } from "./pooling.js";
export { instanceSimilarity, normalizeTargets, targetStats, TARGET_NORMS, type SimilarityKind, type TargetNorm, type TargetStats } from "./instance.js";
export { infonce, siglip, type AlignmentKind } from "./alignment.js";
export { nextTokenCrossEntropy, IGNORE_INDEX } from "./next_token.js";
export { latentObjective, termValues, type ObjectiveConfig, type ObjectiveTerms, type AlignmentParams } from "./combined.js";
export { collapseStats, type CollapseStats } from "./monitors.js";
export { imageWordLoss } from "./image_words.js";
