// A worker of a study's steps (jobs.ts forks it, up to `--jobs` of them): it does the Jobs it is
// sent, one at a time, answering each with a WorkerReply, and exits when the study closes its
// channel. A step a signal stopped (its checkpoint saved) ends the worker with the trainer's exit
// code (130 after SIGINT, 143 after SIGTERM); an idle worker ends on a signal as any process does.
import { runJob, type Job, type WorkerReply } from "./jobs.js";
import { StageInterrupted } from "../train/stages/index.js";

const reply = (r: WorkerReply) => process.send!(r);

process.on("message", (job: Job) => {
  runJob(job).then(() => reply({ kind: "done" }), (e: unknown) => {
    if (e instanceof StageInterrupted) process.exit(typeof process.exitCode === "number" ? process.exitCode : 143);
    reply({ kind: "failed", message: e instanceof Error ? e.message : String(e) });
  });
});
process.on("disconnect", () => process.exit(0));
