// Ablation cells of the study: validated once (unknown keys, values the schema refuses, poolings
// and readouts that do not fit the world), planned without running, and — on a tiny study with a
// two-cell grid and the two literature variants — run end to end, skipped when finished, and
// never silently reused when a cell changed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { StudyConfig, runStudy, planStudy, resolveAblations, loadStudy, estimateSeconds, type StepKind } from "./runner.js";

const here = dirname(fileURLToPath(import.meta.url));
const configs = join(here, "..", "..", "..", "..", "configs"); // dist/experiment -> repo root

const MIRAGE = { readout: "last_token", "head.type": "identity", pool: "mean", "loss.alignment": "none" };
const VIRAL = { readout: "image_tokens", readout_layer: 1, pool: "all", "loss.alignment": "none" };

const tinyStudy = (out: string, ablations: unknown) => StudyConfig.parse({
  name: "tiny", out, world: { scenes: 30, size: 32, latents: 4 },
  world_encoder: { encoder: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, patch_size: 16 }, train: { steps: 2, batch_size: 8 } },
  vlm_base: { lm: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, kv_heads: 1 }, train: { steps: 2, batch_size: 8 } },
  latent_pretrain: { pool: "grid:4", train: { steps: 2, batch_size: 8 } },
  finetune: { train: { steps: 2, batch_size: 8 } },
  fractions: [1], seeds: [0],
  eval: { tasks: ["world_gqa"], splits: ["test"], limit: 4, batch_size: 4, blind: false },
  ablations,
});

test("ablation cells are validated once: unknown keys, refused values and misfits name the cell and the key", () => {
  const cells = (ablations: unknown) => resolveAblations(tinyStudy("/nonexistent", ablations));
  assert.throws(() => cells({ grids: [{ "loss.lamda_sim": [0.5] }] }), /ablations: latent\[lamda_sim=0\.5\].*\n.*unknown key loss\.lamda_sim \(did you mean loss\.lambda_sim\?\)/);
  assert.throws(() => cells({ grids: [{ "loss.similarity": ["cos"] }] }), /ablations: latent\[similarity=cos\].*\n\s+loss\.similarity: /);
  assert.throws(() => cells({ grids: [{ "loss.lambda_sim": [-1] }] }), /loss\.lambda_sim: /);
  assert.throws(() => cells({ grids: [{ "pool.size": [2] }] }), /latent\[pool\.size=2\]: latent_pretrain\.pool\.size: pool is a value, not a section/);
  assert.throws(() => cells({ grids: [{ "loss..x": [1] }] }), /"loss\.\.x" is not a dotted key/);
  assert.throws(() => cells({ grids: [{ pool: ["cls"] }] }), /latent\[pool=cls\]: latent_pretrain\.pool: .*no class token/);
  assert.throws(() => cells({ grids: [{ pool: ["grid:9"] }] }), /needs 9 latent tokens but world\.latents is 4/);
  assert.throws(() => cells({ variants: [{ name: "mirage", set: { ...MIRAGE, pool: "grid:4" } }] }), /mirage: latent_pretrain: readout last_token predicts one latent .*K = 4/);
  assert.throws(() => cells({ variants: [{ name: "viral", set: { ...VIRAL, pool: "mean" } }] }), /viral: latent_pretrain: readout image_tokens .*pool must be all/);
  assert.throws(() => cells({ variants: [{ name: "viral", set: { ...VIRAL, readout_layer: 3 } }] }), /readout_layer 3 is not a hidden state of a 1-layer LM/);
  assert.throws(() => cells({ variants: [{ name: "x", set: { readout_layer: 1 } }] }), /readout_layer is read by readout image_tokens only/);
  assert.throws(() => cells({ variants: [{ name: "latent", set: { pool: "mean" } }] }), /ablations: latent: the name is taken/);
  assert.throws(() => cells({ variants: [{ name: "a", set: { pool: "mean" } }, { name: "a", set: { pool: "all" } }] }), /ablations: a: the name is taken/);
  assert.throws(() => cells({ variants: [{ name: "a", set: {} }] }), /sets no key/);
  assert.throws(() => cells({ fractions: [0.5], grids: [{ pool: ["mean"] }] }), /ablations\.fractions: 0\.5 not among the study's fractions \[1\]/);
  assert.throws(() => tinyStudy("/x", { grid: { pool: ["mean"] } }), /unrecognized key|grid/);

  // A full product, named by its keys; cells equal to an arm (or to an earlier cell) are marked, not run.
  const grid = cells({
    grids: [{ "loss.lambda_sim": [0.5, 1], "loss.alignment": ["infonce", "siglip"] }, { "loss.lambda_sim": [0], "loss.lambda_align": [0] }],
    variants: [{ name: "again", set: { "loss.lambda_sim": 0.5, "loss.alignment": "siglip" } }],
  });
  assert.deepEqual(grid.map((c) => [c.name, c.sameAs]), [
    ["latent[lambda_sim=0.5,alignment=infonce]", null], ["latent[lambda_sim=0.5,alignment=siglip]", null],
    ["latent[lambda_sim=1,alignment=infonce]", "latent"], ["latent[lambda_sim=1,alignment=siglip]", null],
    ["latent[lambda_sim=0,lambda_align=0]", "control"], ["again", "latent[lambda_sim=0.5,alignment=siglip]"],
  ]);
  assert.equal(grid[1]!.folder, "latent_lambda_sim-0.5_alignment-siglip");
  assert.equal(grid[1]!.recipe.loss.alignment, "siglip");
  assert.equal(grid[1]!.recipe.loss.similarity, "cosine", "what the cell does not set is the latent arm's");
});

test("a tiny study with a two-cell grid and the Mirage and VIRAL variants: runs, skips when done, refuses a changed cell without --force", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-ablations-"));
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const ablations = (mirageLambda: number) => ({
    grids: [{ "loss.similarity": ["l2", "smooth_l1"] }],
    variants: [{ name: "mirage", set: { ...MIRAGE, "loss.lambda_sim": mirageLambda } }, { name: "viral", set: VIRAL }],
  });
  try {
    const out = join(root, "study");
    const planned = await planStudy(tinyStudy(out, ablations(1)));
    assert.ok(planned.every((s) => s.status === "run"), "a new study runs every step");
    assert.ok(!existsSync(out), "planning writes nothing");
    const cellsPlanned = planned.filter((s) => s.kind === "latent-pretrain").map((s) => s.what);
    assert.equal(cellsPlanned.length, 2 + 4, "control, latent and four cells");

    await runStudy(tinyStudy(out, ablations(1)), { log });
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as {
      cells: { arm: string }[]; comparisons: { a: string; b: string }[];
      ablations: { name: string; sameAs: string | null; retrieval?: unknown; set: Record<string, unknown> }[];
    };
    const names = ["latent[similarity=l2]", "latent[similarity=smooth_l1]", "mirage", "viral"];
    for (const name of names) {
      assert.ok(results.cells.some((c) => c.arm === name), `${name} is a cell of results.json`);
      for (const b of ["baseline", "latent"]) assert.ok(results.comparisons.some((c) => c.a === name && c.b === b), `${name} − ${b}`);
    }
    assert.deepEqual(results.ablations.map((a) => a.name), names);
    assert.ok(results.ablations[0]!.retrieval && !results.ablations[2]!.retrieval, "retrieval for cells with latent queries only");
    assert.deepEqual(results.ablations[0]!.set, { "loss.similarity": "l2" });
    assert.ok(results.comparisons.some((c) => c.a === "latent" && c.b === "control"), "the arms' comparisons are still there");
    const md = readFileSync(join(out, "results.md"), "utf8");
    assert.match(md, /## Ablations/);
    assert.match(md, /\| world_gqa\/test \| 1 \| mirage \| readout=last_token, head\.type=identity/);
    assert.match(readFileSync(join(out, "results.csv"), "utf8"), /world_gqa\/test,1,"?latent\[similarity=l2\]"?,1,/);
    for (const v of ["mirage", "viral"]) {
      const model = join(out, "stages", "ablations", v, "model");
      assert.ok(existsSync(join(model, "latent_readout.safetensors")), `${v}'s head is kept beside its model`);
      assert.equal((JSON.parse(readFileSync(join(model, "latent_readout.json"), "utf8")) as { readout: string }).readout, v === "mirage" ? "last_token" : "image_tokens");
    }
    const viralLog = readFileSync(join(out, "stages", "ablations", "viral", "metrics.jsonl"), "utf8");
    assert.match(viralLog, /"sim":/, "VIRAL trains its alignment term");
    assert.ok(!viralLog.includes("\"align\""), "and no batch-level term");

    lines.length = 0;
    await runStudy(tinyStudy(out, ablations(1)), { log });
    assert.equal(lines.filter((l) => l.startsWith("[run ]")).length, 0, `nothing reruns: ${lines.join("\n")}`);
    assert.ok((await planStudy(tinyStudy(out, ablations(1)))).every((s) => s.status === "done"));

    // A changed cell: named, stopped, nothing touched; the plan shows it and what follows it.
    const plan = await planStudy(tinyStudy(out, ablations(2)));
    assert.deepEqual(plan.filter((s) => s.status !== "done").map((s) => s.what), [
      "stage 3: latent-pretrain, ablation mirage", "stage 4: finetune mirage, fraction 1, seed 0", "eval mirage f=1 s=0 world_gqa/test",
    ]);
    assert.ok(plan.filter((s) => s.status !== "done").every((s) => s.status === "changed"));
    await assert.rejects(runStudy(tinyStudy(out, ablations(2)), { log }),
      /stage 3: latent-pretrain, ablation mirage: .* was made with other settings \(changed: latent_pretrain\.loss\.lambda_sim\)\. Rerun with --force/);
    lines.length = 0;
    await runStudy(tinyStudy(out, ablations(2)), { log, force: true });
    assert.deepEqual(lines.filter((l) => l.startsWith("[redo]") || l.startsWith("[run ]")).map((l) => l.replace(/[:…].*/, "").trim()), [
      "[redo] stage 3", "[run ] stage 3", "[redo] stage 4", "[run ] stage 4", "[redo] eval mirage f=1 s=0 world_gqa/test", "[run ] eval mirage f=1 s=0 world_gqa/test",
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

/**
 * Step times of `make demo` on the 2-core machine (the README's run: 12.3 min for the whole study;
 * a latent-pretrain ~2 min, a finetune ~40 s, an evaluation ~2 s). A run on a machine shared with
 * other jobs (runs/demo's step markers: finetunes of ~55 s) comes to about 115 min.
 */
const DEMO_SECONDS: Record<StepKind, number> = {
  "world": 30, "world-encoder": 35, "vlm-base": 80, "targets": 10, "latent-pretrain": 120, "retrieval": 5, "finetune": 40, "eval": 2,
};

test("configs/ablations.yaml validates and plans the proposal's ablations within 2 hours on 2 cores", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-ablations-plan-"));
  try {
    const c = loadStudy(join(configs, "ablations.yaml"), [`out=${join(root, "study")}`]);
    const cells = resolveAblations(c);
    const run = cells.filter((x) => x.sameAs === null).map((x) => x.name);
    for (const name of ["latent[lambda_sim=0.1]", "latent[lambda_sim=0.5]", "latent[lambda_sim=2]", "latent[similarity=l2,alignment=siglip]",
      "latent[similarity=smooth_l1,alignment=none]", "latent[pool=mean]", "latent[head.type=linear]", "mirage", "viral"]) assert.ok(run.includes(name), name);
    assert.deepEqual(cells.filter((x) => x.sameAs !== null).map((x) => `${x.name} = ${x.sameAs}`),
      ["latent[lambda_sim=1] = latent", "latent[similarity=cosine,alignment=infonce] = latent"]);
    const plan = await planStudy(c);
    assert.ok(!existsSync(join(root, "study")));
    const pretrains = plan.filter((s) => s.kind === "latent-pretrain").length, finetunes = plan.filter((s) => s.kind === "finetune").length;
    assert.equal(pretrains, 2 + run.length);
    assert.equal(finetunes, 3 * 2 * 3 + run.length * 3, "arms: 2 fractions × 3 seeds; cells: 5% × 3 seeds");
    const hours = estimateSeconds(plan, DEMO_SECONDS) / 3600;
    assert.ok(hours < 2, `estimated ${hours.toFixed(2)} h`);
    t.diagnostic(`configs/ablations.yaml: ${run.length} cells, ${plan.length} steps, estimated ${(hours * 60).toFixed(0)} min`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
