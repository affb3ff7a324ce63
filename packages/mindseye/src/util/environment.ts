// What the engine runs on — libtorch, BLAS, threads, CUDA, allocator: printed by `mindseye
// doctor`, recorded in every study report.
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
