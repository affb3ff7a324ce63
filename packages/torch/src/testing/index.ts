// Test and benchmark support shipped with the engine: the reference decoder, gradcheck, free ports.
export { ReferenceDecoder, Block, CausalSelfAttention } from "./decoder.js";
export type { DecoderConfig } from "./decoder.js";
export { gradcheck } from "./gradcheck.js";
export { freePort } from "./ports.js";
