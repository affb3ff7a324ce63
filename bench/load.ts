// bench:load — peak memory and time of loading a Qwen2.5-VL-7B-shaped checkpoint: the real
// config.json (hidden 3584, MLP 18944, 28/4 heads, vocabulary 152064, untied lm_head, vision
// 1280 wide) cut to 2 text layers and 2 vision blocks, written as bf16 shards with
// model.safetensors.index.json (≈ 3.3 GB), then loaded by
// Qwen2_5_VLForConditionalGeneration.fromPretrained(dir, { dtype: "bfloat16" }) in a fresh process.
// With python3-torch and safetensors installed (scripts/setup.sh with MINDSEYE_WITH_PYTORCH=1),
// safetensors.torch.load_file of the same shards runs beside it as a reference (its tensors map the
// file, so it is shown as returned and after every page has been read).
//
//   npm run bench:load [-- --layers 2 --vision-depth 2 --shard-gb 1 --dir /tmp/x --keep]
// Peak is VmHWM from /proc/<pid>/status; "grew" is the peak minus the peak the process had
// already reached before loading (node + libtorch, or python + torch). Needs ≈ 2× the file in
// free disk and ≈ 1.3× the file in free memory.
// Last line: `load peak ratio vs file: R` (what loading added to the peak, over the file size).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { torch } from "@mindseye/torch";
import { measureLoadInChild, writeQwen2_5_VL7bShaped } from "mindseye/dist/models/pretrained_memory_test_helpers.js";
import { fmt } from "./common.js";

const args = parseArgs({
  options: {
    layers: { type: "string", default: "2" },
    "vision-depth": { type: "string", default: "2" },
    "shard-gb": { type: "string", default: "1" },
    dir: { type: "string" },
    keep: { type: "boolean", default: false },
    python: { type: "string", default: "/usr/bin/python3" },
  },
}).values;

const GB = (b: number) => fmt(b / 1e9, 2);

// Reads every shard with safetensors.torch.load_file, keeping all tensors, as a user would. Its
// tensors map the file lazily, so the reference is measured twice: as returned (nothing resident
// yet) and after t.max() has touched every page (a reduction, no tensor-sized temporary).
const PY_REFERENCE = `
import json, sys, time, glob, os
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"): return int(line.split()[1]) * 1024
import torch, safetensors.torch
before = status("VmHWM")
t0 = time.perf_counter()
sd = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))): sd.update(safetensors.torch.load_file(f))
lazy = {"peakBytes": status("VmHWM"), "loadSeconds": time.perf_counter() - t0}
for t in sd.values():
    if t.numel() > 0: t.max()
print(json.dumps({"baselinePeakBytes": before, "lazy": lazy, "peakBytes": status("VmHWM"), "loadSeconds": time.perf_counter() - t0}))
`;

interface Reference { baselinePeakBytes: number; lazy: { peakBytes: number; loadSeconds: number }; peakBytes: number; loadSeconds: number }

function pytorchReference(dir: string): Reference | string {
  const probe = spawnSync(args.python, ["-c", "import torch, safetensors"], { encoding: "utf8" });
  if (probe.status !== 0) return `skipped: ${args.python} cannot import torch and safetensors (install them with MINDSEYE_WITH_PYTORCH=1 scripts/setup.sh)`;
  const r = spawnSync(args.python, ["-c", PY_REFERENCE, dir], { encoding: "utf8" });
  if (r.status !== 0) return `failed (exit ${r.status}): ${r.stderr.trim().split("\n").at(-1)}`;
  return JSON.parse(r.stdout) as Reference;
}

function main(): void {
  const layers = Number(args.layers), depth = Number(args["vision-depth"]);
  const settings = torch.getThreads();
  console.log(`MindsEye: libtorch ${torch.buildInfo().torchVersion}, intra-op threads ${settings.intraOp}`);
  const root = args.dir ?? mkdtempSync(join(tmpdir(), "mindseye-bench-load-"));
  const dir = join(root, "qwen2_5_vl_7b_shaped");
  try {
    let t0 = performance.now();
    const w = writeQwen2_5_VL7bShaped(dir, { numHiddenLayers: layers, visionDepth: depth, maxShardBytes: Number(args["shard-gb"]) * 1e9 });
    console.log(`wrote ${dir}: ${w.shards} bf16 shards + index, ${GB(w.fileBytes)} GB (${layers} text layers, ${depth} vision blocks) in ${fmt((performance.now() - t0) / 1000)} s`);

    t0 = performance.now();
    const m = measureLoadInChild(dir, "bfloat16");
    const grown = m.peakBytes - m.baselinePeakBytes;
    const same = Object.entries(w.sums).every(([k, v]) => m.sums[k] === v);
    if (!same) throw new Error(`the loaded weights differ from the written ones: ${JSON.stringify(m.sums)} vs ${JSON.stringify(w.sums)}`);

    const rows: [string, string, string, string, string, string][] = [["", "file GB", "before GB", "peak GB", "grew/file", "load s"]];
    rows.push(["MindsEye fromPretrained", GB(w.fileBytes), GB(m.baselinePeakBytes), GB(m.peakBytes), fmt(grown / w.fileBytes, 3), fmt(m.loadSeconds)]);
    const ref = pytorchReference(dir);
    if (typeof ref === "string") console.log(`PyTorch reference: ${ref}`);
    else {
      const row = (name: string, peak: number, seconds: number) => [name, GB(w.fileBytes), GB(ref.baselinePeakBytes), GB(peak), fmt((peak - ref.baselinePeakBytes) / w.fileBytes, 3), fmt(seconds)] as typeof rows[0];
      rows.push(row("safetensors.torch.load_file (mapped)", ref.lazy.peakBytes, ref.lazy.loadSeconds));
      rows.push(row("  + every page touched", ref.peakBytes, ref.loadSeconds));
    }
    const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join("  "));
    console.log("(MindsEye's load time includes building the model and its random initialisation, which the load then overwrites)");
    console.log(`load peak ratio vs file: ${fmt(grown / w.fileBytes, 3)}`);
  } finally {
    if (!args.keep) rmSync(args.dir === undefined ? root : dir, { recursive: true, force: true });
    else console.log(`kept ${dir} (${readdirSync(dir).length} files)`);
  }
}

main();
