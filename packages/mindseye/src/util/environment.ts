// What the engine runs on — libtorch, BLAS, threads, CUDA, allocator: printed by `mindseye
// doctor`, recorded in every study report.
import { readFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { torch } from "@mindseye/torch";
import { VERSION } from "../version.js";

export interface DoctorReport {
  mindseye: string;
  node: string;
  libtorch: { version: string; libraries: string[] };
  blas: { name: string; threads: number | null; core: string | null; warning?: string };
  threads: { intraOp: number; interOp: number; blas: number | null; cores: number; cpu: string };
  cuda: { builtWith: boolean; available: boolean; devices: number };
  allocator: string;
}

export function doctorReport(): DoctorReport {
  const b = torch.buildInfo();
  const blasLib = b.libraries.find((l) => /blas|mkl/i.test(l) && !/lapack/i.test(l)) ?? "unknown";
  const isOpenBlas = b.blasConfig !== null;
  const reference = !isOpenBlas && !/mkl/i.test(b.libraries.join(" "));
  return {
    mindseye: VERSION,
    node: process.version,
    libtorch: { version: b.torchVersion, libraries: b.libraries.filter((l) => /libtorch|libc10/.test(l)) },
    blas: {
      name: isOpenBlas ? b.blasConfig! : blasLib,
      threads: b.blasThreads,
      core: b.blasCore,
      ...(reference ? { warning: "the reference BLAS is in use (about 20x slower): apt-get install libopenblas0-pthread" } : {}),
    },
    threads: { intraOp: b.intraOpThreads, interOp: b.interOpThreads, blas: b.blasThreads, cores: availableParallelism(), cpu: cpus()[0]?.model ?? "unknown" },
    cuda: { builtWith: b.builtWithCuda, available: b.cudaAvailable, devices: b.cudaDeviceCount },
    allocator: b.allocatorTuned ? "glibc, tuned for training loops (MINDSEYE_ALLOCATOR=system to disable)" : "system default",
  };
}

/**
 * What decides a run's arithmetic on this machine, as each study step records it: the CPU and the
 * widest vector instructions it offers (libtorch's CPU kernels and OpenBLAS's pick theirs from
 * them), the BLAS with the core it chose, and libtorch. Two runs of one config give the same
 * weights only where these (and the thread counts) agree; elsewhere a training run is another draw.
 */
export interface MachineRecord { cpu: string; vector: string; cores: number; blas: string; libtorch: string }

export function machineRecord(): MachineRecord {
  const r = doctorReport();
  return { cpu: r.threads.cpu, vector: widestVectorExtension(), cores: r.threads.cores, blas: r.blas.name, libtorch: r.libtorch.version };
}

/** The widest vector extension /proc/cpuinfo lists (x86: avx512f, avx2, avx, sse4_2; Arm: asimd), "unknown" where it cannot be read. */
function widestVectorExtension(): string {
  let flags: Set<string>;
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => /^(flags|Features)\s*:/.test(l));
    flags = new Set((line?.split(":")[1] ?? "").trim().split(/\s+/));
  } catch {
    return "unknown";
  }
  return ["avx512f", "avx2", "avx", "sse4_2", "asimd"].find((f) => flags.has(f)) ?? "unknown";
}
