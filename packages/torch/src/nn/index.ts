export { Module, ModuleList, Parameter, Buffer, StateDictError } from "./module.js";
export { Linear, Embedding, LayerNorm, RMSNorm, Conv2d, Conv3d, Dropout } from "./layers.js";
export type { FactoryOptions, ConvOptions } from "./layers.js";
export * as init from "./init.js";
export { DistributedDataParallel } from "./ddp.js";
export type { DDPOptions } from "./ddp.js";
export * as functional from "../functional.js";
