// One step of a study in a process of its own (jobs.ts starts it with the step's Job as JSON):
//   node dist/experiment/job_child.js '{"kind":"eval","options":{…}}'
// The exit code is 0 when the step is done, the trainer's 130/143 when a signal stopped it (its
// checkpoint saved), and 1 with the error on stderr when it failed.
import { runJob, type Job } from "./jobs.js";
import { StageInterrupted } from "../train/stages/index.js";

try {
  await runJob(JSON.parse(process.argv[2]!) as Job);
} catch (e) {
  if (!(e instanceof StageInterrupted)) {
    console.error(`mindseye: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  }
}
