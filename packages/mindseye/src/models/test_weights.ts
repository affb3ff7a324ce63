// Shared by the model families' tests (not a test file itself).
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, nn } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";

/**
 * Redraws a model's weights so each has an O(1) effect, as the golden fixtures do (HF's std-0.02
 * initialisation gives near-zero logits, which would let mask, cache and position tests pass for the
 * wrong reason): vectors ending in "bias" N(0, 0.2), other vectors (norm weights) N(1, 0.2), token
 * embeddings N(0, 1), other matrices N(0, 1/fan-in).
 */
export function wellConditioned<M extends nn.Module>(model: M, seed = 0): M {
  const generator = new torch.Generator(seed);
  for (const [name, p] of model.namedParameters()) {
    if (p.ndim === 1) nn.init.normal_(p, name.endsWith("bias") ? 0 : 1, 0.2, generator);
    else if (name.endsWith("embed_tokens.weight")) nn.init.normal_(p, 0, 1, generator);
    else nn.init.normal_(p, 0, 1 / Math.sqrt(p.shape.slice(1).reduce((a, b) => a * b, 1)), generator);
  }
  return model;
}

/**
 * For the tests that a config.json not describing its checkpoint is refused: `refuse(patch, msg)`
 * rewrites dir's config.json as the saved one with `patch` applied and expects `load(dir)` to throw
 * a ConfigError whose message matches `msg` (with namesFile, also one that starts with the file's
 * path). `good` is the config.json as saved.
 */
export function configRefusal<C extends Record<string, unknown>>(dir: string, load: (dir: string) => unknown, o: { namesFile?: boolean } = {}): { good: C; refuse: (patch: Record<string, unknown>, msg: RegExp) => void } {
  const path = join(dir, "config.json");
  const good = JSON.parse(readFileSync(path, "utf8")) as C;
  const refuse = (patch: Record<string, unknown>, msg: RegExp) => {
    writeFileSync(path, JSON.stringify({ ...good, ...patch }));
    assert.throws(() => load(dir), (e: Error) => e instanceof ConfigError && msg.test(e.message) && (!o.namesFile || e.message.startsWith(path)), JSON.stringify(patch));
  };
  return { good, refuse };
}
