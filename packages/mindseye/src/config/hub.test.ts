import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, symlinkSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "./errors.js";
import { hubCacheDir, resolveModelRef } from "./hub.js";
import { loadVlm } from "../models/family.js";
import { writeTinyLlava } from "../models/llava_test_helpers.js";

const MAIN = "a".repeat(40), PR = "b".repeat(40);

/** A hub cache as huggingface_hub lays it out: refs, snapshots whose files link into blobs. */
function fakeCache(): string {
  const cache = mkdtempSync(join(tmpdir(), "mindseye-hub-"));
  const repo = join(cache, "models--Org--Tiny-VL");
  mkdirSync(join(repo, "refs"), { recursive: true });
  mkdirSync(join(repo, "blobs"), { recursive: true });
  writeFileSync(join(repo, "refs", "main"), MAIN + "\n");
  writeFileSync(join(repo, "refs", "v2"), PR);
  for (const commit of [MAIN, PR]) {
    mkdirSync(join(repo, "snapshots", commit), { recursive: true });
    writeFileSync(join(repo, "blobs", commit), JSON.stringify({ model_type: "llava", commit }));
    symlinkSync(join(repo, "blobs", commit), join(repo, "snapshots", commit, "config.json"));
  }
  return cache;
}

test("hubCacheDir follows huggingface_hub's order: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME, ~/.cache", () => {
  assert.equal(hubCacheDir({ HF_HUB_CACHE: "/c", HF_HOME: "/h" }), "/c");
  assert.equal(hubCacheDir({ HUGGINGFACE_HUB_CACHE: "/old" }), "/old");
  assert.equal(hubCacheDir({ HF_HOME: "/h", XDG_CACHE_HOME: "/x" }), "/h/hub");
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: "/x" }), "/x/huggingface/hub");
  assert.equal(hubCacheDir({ HF_HUB_CACHE: "" }), join(homedir(), ".cache", "huggingface", "hub"));
});

test("resolveModelRef: a directory as is; an id to its snapshot at main, a branch or tag, or a commit", () => {
  const cache = fakeCache();
  try {
    const env = { HF_HUB_CACHE: cache };
    const snap = (c: string) => join(cache, "models--Org--Tiny-VL", "snapshots", c);
    assert.equal(resolveModelRef(cache, env), cache);
    assert.equal(resolveModelRef("Org/Tiny-VL", env), snap(MAIN));
    assert.equal(resolveModelRef("Org/Tiny-VL@v2", env), snap(PR));
    assert.equal(resolveModelRef(`Org/Tiny-VL@${PR}`, env), snap(PR));
    assert.equal(resolveModelRef("not a model id", env), "not a model id");
    assert.equal(resolveModelRef("runs/a/b/model", env), "runs/a/b/model", "a path of three parts is not an id");
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

test("resolveModelRef: what is missing from the cache is named, with the command that downloads it", () => {
  const cache = fakeCache();
  try {
    const env = { HF_HUB_CACHE: cache };
    assert.throws(() => resolveModelRef("Qwen/Qwen2.5-VL-7B-Instruct", env),
      (e: Error) => e instanceof ConfigError && e.message.includes(join(cache, "models--Qwen--Qwen2.5-VL-7B-Instruct")) && e.message.includes("hf download Qwen/Qwen2.5-VL-7B-Instruct") && /HF_HUB_CACHE/.test(e.message));
    assert.throws(() => resolveModelRef("Org/Tiny-VL@dev", env), /not its revision "dev".*hf download Org\/Tiny-VL --revision dev/);
    rmSync(join(cache, "models--Org--Tiny-VL", "snapshots", MAIN, "config.json"));
    assert.throws(() => resolveModelRef("Org/Tiny-VL", env), /has no config\.json \(an interrupted or partial download\?\)/);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

test("loadVlm reads a model named by its Hugging Face id from HF_HUB_CACHE", () => {
  const cache = mkdtempSync(join(tmpdir(), "mindseye-hub-"));
  const saved = process.env.HF_HUB_CACHE;
  try {
    const snapshot = join(cache, "models--llava-hf--tiny-llava", "snapshots", MAIN);
    mkdirSync(snapshot, { recursive: true });
    mkdirSync(join(cache, "models--llava-hf--tiny-llava", "refs"));
    writeFileSync(join(cache, "models--llava-hf--tiny-llava", "refs", "main"), MAIN);
    writeTinyLlava(snapshot, { template: true });
    process.env.HF_HUB_CACHE = cache;
    const vlm = loadVlm("llava-hf/tiny-llava");
    assert.equal(vlm.modelType, "llava");
  } finally {
    if (saved === undefined) delete process.env.HF_HUB_CACHE; else process.env.HF_HUB_CACHE = saved;
    rmSync(cache, { recursive: true, force: true });
  }
});
