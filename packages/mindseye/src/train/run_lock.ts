// One training process per run folder: `runDir/train.lock`, created exclusively (O_EXCL) and
// holding its owner's pid, host and start time. A second run into the folder is refused with the
// owner's name; a lock whose process is gone from this host (a crash, a SIGKILL) is stale and is
// taken over with a message. The lock is removed when the run ends, on errors and on exit.
//
//   const release = lockRun(runDir);
//   try { ...train... } finally { release(); }
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

export interface LockOwner {
  pid: number;
  hostname: string;
  /** ISO time the owner took the lock. */
  started: string;
}

export class RunLockedError extends Error {
  constructor(readonly path: string, readonly owner: LockOwner) {
    super(`${path}: this run folder is in use by pid ${owner.pid} on ${owner.hostname} (since ${owner.started}); ` +
      `wait for that run to end or stop it (kill -TERM ${owner.pid} on ${owner.hostname}). ` +
      `If that process no longer exists on ${owner.hostname}, delete ${path}`);
    this.name = "RunLockedError";
  }
}

/** Whether a process with this pid exists on this machine (EPERM: it exists, owned by another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readOwner(path: string): LockOwner {
  const text = readFileSync(path, "utf8");
  try {
    return JSON.parse(text) as LockOwner;
  } catch {
    throw new Error(`${path}: not a lock file written by mindseye (${JSON.stringify(text.slice(0, 80))}); delete it if no run is using this folder`);
  }
}

/**
 * Takes `runDir/train.lock`, or throws RunLockedError naming its live owner. A stale lock (its pid
 * not alive on this host) is reported through `log` and taken over. Returns the release function
 * (also run on process exit, so a forced exit leaves no lock behind).
 */
export function lockRun(runDir: string, log: (message: string) => void = console.error): () => void {
  const path = join(runDir, "train.lock");
  const me: LockOwner = { pid: process.pid, hostname: hostname(), started: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, JSON.stringify(me) + "\n");
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 3) throw e;
    }
    let owner: LockOwner;
    try {
      owner = readOwner(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // released meanwhile
      throw e;
    }
    if (owner.hostname !== me.hostname || processAlive(owner.pid)) throw new RunLockedError(path, owner);
    // Stale. Move it aside (atomic: of two processes taking it over, one gets ENOENT and retries)
    // and check that what moved is the stale lock and not a fresh one taken meanwhile.
    const aside = `${path}.stale-${process.pid}`;
    try {
      renameSync(path, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw e;
    }
    const moved = readOwner(aside);
    if (moved.pid !== owner.pid || moved.started !== owner.started) {
      renameSync(aside, path);
      throw new RunLockedError(path, moved);
    }
    rmSync(aside);
    log(`${path}: took over a stale lock of pid ${owner.pid} on ${owner.hostname} (started ${owner.started}; that process is gone)`);
  }
  const release = () => {
    process.off("exit", release);
    let owner: LockOwner;
    try {
      owner = readOwner(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return; // already gone
      throw e;
    }
    if (owner.pid === me.pid && owner.started === me.started) rmSync(path);
  };
  process.on("exit", release);
  return release;
}
