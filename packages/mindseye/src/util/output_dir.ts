// Output folders: created with an error that says what the folder is for, where the problem is
// and what to do, instead of raw errno text.
//
// mkdirSync(dir, { recursive: true }) is not used: under a pseudo file system such as /proc the
// kernel answers ENOENT for every level, and Node 20's recursive mkdir then loops forever. The
// folders are made one level at a time, after checking that the nearest existing ancestor is a
// writable folder; read-only places are reported as EROFS, not as a missing path.
import { accessSync, constants, mkdirSync, readFileSync, statSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";

/** An output folder that cannot be made; `code` is the errno name (EROFS, EACCES, ENOTDIR, ENOSPC, …). */
export class OutputDirError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = "OutputDirError";
  }
}

/** The mount point and options of the file system holding `path` (from /proc/self/mounts), or null. */
function mountOf(path: string): { mountPoint: string; fsType: string; readOnly: boolean } | null {
  let text: string;
  try {
    text = readFileSync("/proc/self/mounts", "utf8");
  } catch {
    return null; // not Linux
  }
  let best: { mountPoint: string; fsType: string; readOnly: boolean } | null = null;
  for (const line of text.split("\n")) {
    const [, rawPoint, fsType, options] = line.split(" ");
    if (rawPoint === undefined || fsType === undefined || options === undefined) continue;
    const mountPoint = rawPoint.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const inside = path === mountPoint || path.startsWith(mountPoint.endsWith("/") ? mountPoint : `${mountPoint}/`);
    if (inside && (best === null || mountPoint.length >= best.mountPoint.length)) {
      best = { mountPoint, fsType, readOnly: options.split(",").includes("ro") };
    }
  }
  return best;
}

// Kernel file systems that hold no user files: creating folders there always fails.
const PSEUDO_FS = new Set(["proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "pstore", "bpf", "configfs", "fusectl"]);

/** Why no folder can be created inside the existing folder `at` (null when one can, as far as can be told). */
function notWritable(at: string, st: Stats): { code: string; why: string } | null {
  const mount = mountOf(at);
  if (mount !== null && (mount.readOnly || PSEUDO_FS.has(mount.fsType))) {
    return { code: "EROFS", why: `${at} is on a read-only file system (${mount.fsType} mounted at ${mount.mountPoint})` };
  }
  // Root passes access(W_OK) everywhere, so a folder without any write bit is read-only too.
  if ((st.mode & 0o222) === 0) return { code: "EROFS", why: `${at} is read-only (mode ${(st.mode & 0o777).toString(8)})` };
  try {
    accessSync(at, constants.W_OK | constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "EACCES";
    return { code, why: code === "EROFS" ? `${at} is on a read-only file system` : `${at} is not writable by this user (${code})` };
  }
  return null;
}

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  EROFS: "the file system is read-only",
  EACCES: "permission denied",
  EPERM: "the operation is not permitted there",
  ENOSPC: "the disk is full",
  EDQUOT: "the disk quota is exhausted",
  ENAMETOOLONG: "the path is too long",
  ENOTDIR: "a part of the path is a file, not a folder",
};

/**
 * Creates `dir` and its missing parents, or throws an OutputDirError naming the folder's purpose
 * (`what`), the place that is the problem, and what to do.
 * ```ts
 * makeOutputDir(o.out, "the target cache (--out)");
 * ```
 */
export function makeOutputDir(dir: string, what: string): void {
  const target = resolve(dir);
  const fail = (code: string, why: string): never => {
    throw new OutputDirError(`cannot create ${what} ${dir}: ${why} (${code}); choose a writable location`, code);
  };
  // 1. The nearest existing ancestor must be a writable folder.
  const missing: string[] = [];
  let at = target;
  let st: Stats | undefined;
  for (;;) {
    try {
      st = statSync(at);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") fail(code ?? "EIO", `cannot inspect ${at}: ${ERRNO_TEXT[code ?? ""] ?? (e as Error).message}`);
      const up = dirname(at);
      if (up === at) fail("ENOENT", "no part of the path exists");
      missing.unshift(at);
      at = up;
    }
  }
  if (!st.isDirectory()) fail("ENOTDIR", missing.length === 0 ? `${at} exists and is a file, not a folder` : `${at} is a file, not a folder`);
  if (missing.length === 0) return;
  const blocked = notWritable(at, st);
  if (blocked !== null) fail(blocked.code, blocked.why);
  // 2. One level at a time (see the header).
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? "EIO";
      if (code === "EEXIST" && statSync(d).isDirectory()) continue; // made meanwhile by another process
      fail(code, `mkdir ${d} failed: ${ERRNO_TEXT[code] ?? (e as Error).message}`);
    }
  }
}
