// Which models `mindseye analyze` reads from a study folder: the base, the pretrained arms and the
// ablation cells results.json names (not those equal to an arm, nor unfinished ones), each with
// its run folder and whether its latent queries feed a head the analysis can rank.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { studyModels } from "./study.js";

test("studyModels: base, arms, then the ablation cells of results.json by their names; Mirage-style readouts have no head to rank", () => {
  const study = mkdtempSync(join(tmpdir(), "mindseye-study-models-"));
  try {
    const model = (run: string, head: boolean) => {
      mkdirSync(join(study, "stages", run, "model"), { recursive: true });
      writeFileSync(join(study, "stages", run, "model", "config.json"), JSON.stringify(head ? { latent_head: { type: "mlp" } } : {}));
    };
    model("vlm-base", false);
    model("pretrain-control", false);
    model("pretrain-latent", true);
    model("ablations/latent_lambda_sim-2", true);
    model("ablations/mirage", true);
    mkdirSync(join(study, "stages", "ablations", "unfinished"), { recursive: true });
    const cell = (name: string, folder: string, readout: string, sameAs: string | null) => ({ name, folder, set: {}, readout, sameAs });
    writeFileSync(join(study, "results.json"), JSON.stringify({
      ablations: [
        cell("latent[lambda_sim=2]", "latent_lambda_sim-2", "queries", null),
        cell("latent[lambda_sim=1]", "latent_lambda_sim-1", "queries", "latent"),
        cell("mirage", "mirage", "last_token", null),
        cell("late", "unfinished", "queries", null),
      ],
    }));
    const got = studyModels(study).map((m) => ({ arm: m.arm, stage: m.stage, run: m.runDir.slice(study.length + 1), head: m.latentHead }));
    assert.deepEqual(got, [
      { arm: "baseline", stage: "base", run: "stages/vlm-base", head: false },
      { arm: "control", stage: "pretrained", run: "stages/pretrain-control", head: false },
      { arm: "latent", stage: "pretrained", run: "stages/pretrain-latent", head: true },
      { arm: "latent[lambda_sim=2]", stage: "pretrained", run: "stages/ablations/latent_lambda_sim-2", head: true },
      { arm: "mirage", stage: "pretrained", run: "stages/ablations/mirage", head: false },
    ]);
  } finally {
    rmSync(study, { recursive: true, force: true });
  }
});
