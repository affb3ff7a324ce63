// Model references as transformers takes them: a directory, or a Hugging Face id
// ("Qwen/Qwen2.5-VL-7B-Instruct", optionally "@revision") found offline in the local hub cache,
// laid out as huggingface_hub writes it:
//
//   $HF_HUB_CACHE/models--Qwen--Qwen2.5-VL-7B-Instruct/
//     refs/main                      the commit hash the branch or tag "main" points to
//     snapshots/<commit>/config.json the files of that commit (links into blobs/)
//
// The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub (huggingface_hub's constants; HUGGINGFACE_HUB_CACHE is its older
// name). MindsEye never downloads: a missing model is an error naming the command that fetches it.
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "./errors.js";

type Env = Readonly<Record<string, string | undefined>>;

/** The hub cache directory huggingface_hub would use with this environment. */
export function hubCacheDir(env: Env = process.env): string {
  const set = (v: string | undefined) => (v === undefined || v === "" ? undefined : v);
  const cache = set(env.HF_HUB_CACHE) ?? set(env.HUGGINGFACE_HUB_CACHE);
  if (cache !== undefined) return cache;
  const home = set(env.HF_HOME) ?? join(set(env.XDG_CACHE_HOME) ?? join(homedir(), ".cache"), "huggingface");
  return join(home, "hub");
}

/** "org/name" or "org/name@revision": a Hugging Face model id, as far as its shape goes. */
const HUB_ID = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@([\w./-]+))?$/;
const COMMIT = /^[0-9a-f]{40}$/;

/**
 * The directory a model reference names: an existing directory as is; otherwise a Hugging Face
 * id's snapshot in the local hub cache (revision "main" unless "@revision" is given: a branch,
 * a tag or a commit hash). Anything else comes back unchanged, for the caller's own error.
 * ```ts
 * resolveModelRef("runs/demo/finetune/baseline/fraction-1/seed-0/model"); // the same path
 * resolveModelRef("Qwen/Qwen2.5-VL-7B-Instruct"); // ~/.cache/huggingface/hub/models--Qwen--Qwen2.5-VL-7B-Instruct/snapshots/<commit>
 * ```
 */
export function resolveModelRef(ref: string, env: Env = process.env): string {
  if (existsSync(ref)) return ref;
  const m = HUB_ID.exec(ref);
  if (m === null) return ref;
  const [, org, name, revision = "main"] = m;
  const cache = hubCacheDir(env);
  const repo = join(cache, `models--${org}--${name}`);
  const fetch = `\`hf download ${org}/${name}${revision === "main" ? "" : ` --revision ${revision}`}\` (huggingface_hub; huggingface-cli download with older versions)`;
  if (!existsSync(repo)) {
    throw new ConfigError(`${ref}: no such directory, and no Hugging Face model ${org}/${name} in the hub cache ${cache} (no ${repo}). ` +
      `Download it on a machine with network access with ${fetch}, or point HF_HUB_CACHE / HF_HOME at the cache that holds it.`);
  }
  let commit = revision;
  if (!COMMIT.test(revision)) {
    const refFile = join(repo, "refs", revision);
    if (!existsSync(refFile) || !statSync(refFile).isFile()) {
      throw new ConfigError(`${ref}: the hub cache holds ${org}/${name} but not its revision "${revision}" (no ${refFile}); fetch it with ${fetch}, or name a commit as ${org}/${name}@<commit>`);
    }
    commit = readFileSync(refFile, "utf8").trim();
  }
  const snapshot = join(repo, "snapshots", commit);
  if (!existsSync(join(snapshot, "config.json"))) {
    throw new ConfigError(`${ref}: the hub cache's snapshot ${snapshot} has no config.json (an interrupted or partial download?); fetch it again with ${fetch}`);
  }
  return snapshot;
}
