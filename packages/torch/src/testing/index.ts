// Test and benchmark support shipped with the engine: the reference decoder and gradcheck.
export { ReferenceDecoder, Block, CausalSelfAttention } from "./decoder.js";
export type { DecoderConfig } from "./decoder.js";
export { gradcheck } from "./gradcheck.js";
