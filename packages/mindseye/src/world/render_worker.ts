// Render jobs: draw one scene (and its jigsaw images) and write the PNG files. Jobs run in the
// generating thread or in worker threads (this file is also the worker's entry point); a file's
// bytes depend only on its job, so the output is the same for any number of workers.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { renderJigsaw, renderScene } from "./render.js";
import type { Scene } from "./scene.js";

export interface RenderJob {
  scene: Scene;
  /** Output paths relative to the world directory. */
  image: string;
  /** The ScienceQA copy of the image (images/{split}/{pid}/image.png), if the scene has a problem. */
  science?: string;
  jigsaw?: { variant: Scene; trueFirst: boolean; masked: string; second: string; third: string };
}

/** Renders a job and writes its files under `out` (whose images/ and blink/Jigsaw/images/ exist). */
export function runRenderJob(job: RenderJob, out: string, size: number): void {
  const write = (rel: string, bytes: Buffer) => writeFileSync(join(out, rel), bytes);
  let png: Buffer;
  if (job.jigsaw) {
    const j = renderJigsaw(job.scene, job.jigsaw.variant, size);
    png = j.full;
    write(job.jigsaw.masked, j.masked);
    write(job.jigsaw.second, job.jigsaw.trueFirst ? j.truePatch : j.falsePatch);
    write(job.jigsaw.third, job.jigsaw.trueFirst ? j.falsePatch : j.truePatch);
  } else {
    png = renderScene(job.scene, size);
  }
  write(job.image, png);
  if (job.science) {
    mkdirSync(dirname(join(out, job.science)), { recursive: true });
    write(job.science, png);
  }
}

export interface WorkerData { mindseyeWorldRender: true; out: string; size: number }

// Worker entry: receives arrays of jobs, answers with how many were done.
if (!isMainThread && (workerData as WorkerData | null)?.mindseyeWorldRender) {
  const { out, size } = workerData as WorkerData;
  parentPort!.on("message", (jobs: RenderJob[]) => {
    for (const job of jobs) runRenderJob(job, out, size);
    parentPort!.postMessage(jobs.length);
  });
}
