export { Optimizer } from "./optimizer.js";
export type { OptimizerState, GroupSpec, Group } from "./optimizer.js";
export { AdamW, ADAMW_DEFAULTS } from "./adamw.js";
export type { AdamWOptions } from "./adamw.js";
export { SGD, SGD_DEFAULTS } from "./sgd.js";
export type { SGDOptions } from "./sgd.js";
export { clipGradNorm } from "./clip.js";
export * as schedules from "./schedules.js";
export type { Schedule } from "./schedules.js";
