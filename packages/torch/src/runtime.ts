// Runtime settings, applied once at start-up: threads and the CPU allocator.
//
// Threads.
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

// Allocator. A training step frees and re-allocates the same large buffers every step; with
// glibc's defaults those above the mmap threshold are unmapped and mapped again, and freed heap
// tops are returned to the OS, so each step pays page faults for fresh zeroed pages (measured
// on the bench:engine decoder: ~25% of the step). MindsEye fixes the thresholds so freed memory
// stays in the process for reuse, as a caching allocator would: blocks up to 32 MiB (glibc's
// maximum mmap threshold) come from the heap, and up to 1 GiB of free heap is kept.
// MINDSEYE_ALLOCATOR=system keeps glibc's defaults.
const MMAP_THRESHOLD = 32 * 1024 * 1024;
const TRIM_THRESHOLD = 1024 * 1024 * 1024;
const TOP_PAD = 64 * 1024 * 1024;

/** Whether the allocator tuning above is in effect. */
export let allocatorTuned = false;

export function configureAllocator(mode = process.env.MINDSEYE_ALLOCATOR ?? "cached"): void {
  if (mode === "system") return;
  if (mode !== "cached") throw new RangeError(`MINDSEYE_ALLOCATOR=${mode}: expected "cached" (default) or "system"`);
  allocatorTuned = native.tuneAllocator(MMAP_THRESHOLD, TRIM_THRESHOLD, TOP_PAD);
}

setThreads(defaultThreadSettings());
configureAllocator();
