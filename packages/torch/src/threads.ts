// Threading, set once at start-up.
//
// Two pools do the work on CPU: ATen's OpenMP intra-op threads (elementwise ops, reductions,
// softmax, layer norm...) and OpenBLAS's own pthreads (matmul). They do not know about each
// other: with N OpenMP threads *and* N BLAS threads on N cores, idle OpenMP workers spin while
// BLAS runs, and small ops pay fork/join costs — on 2 vCPUs that made a small training step
// 2x slower. So MindsEye's default is:
//   intra-op threads = 1            (MINDSEYE_NUM_THREADS to change; PyTorch: torch.set_num_threads)
//   BLAS threads     = cores        (MINDSEYE_BLAS_THREADS; OpenBLAS: OPENBLAS_NUM_THREADS)
// which is also PyTorch's fastest setting on such machines; bench:engine compares both at
// their best. On machines with many cores (or on CUDA, where CPU threads matter little),
// raise MINDSEYE_NUM_THREADS; `mindseye doctor` prints what is in effect.
import { availableParallelism } from "node:os";
import { native } from "./native.js";

export interface ThreadSettings {
  intraOp: number;
  blas: number;
}

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name}=${v}: expected a positive integer`);
  return n;
}

/** The settings MindsEye starts with (environment first, then the defaults above). */
export function defaultThreadSettings(): ThreadSettings {
  return {
    intraOp: envInt("MINDSEYE_NUM_THREADS") ?? 1,
    blas: envInt("MINDSEYE_BLAS_THREADS") ?? envInt("OPENBLAS_NUM_THREADS") ?? availableParallelism(),
  };
}

/** Sets intra-op (OpenMP) and BLAS thread counts; either may be omitted. */
export function setThreads(s: Partial<ThreadSettings>): void {
  if (s.intraOp !== undefined) native.setNumThreads(s.intraOp);
  if (s.blas !== undefined) native.setBlasThreads(s.blas);
}

export function getThreads(): { intraOp: number; blas: number | null } {
  return { intraOp: native.getNumThreads(), blas: native.buildInfo().blasThreads };
}

setThreads(defaultThreadSettings());
