// `mindseye doctor`: what the engine runs on — libtorch, BLAS, threads, CUDA, allocator.
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

export function printDoctor(asJson: boolean): void {
  const r = doctorReport();
  if (asJson) {
    console.log(JSON.stringify(r, null, 2));
    return;
  }
  const rows: [string, string][] = [
    ["mindseye", r.mindseye],
    ["node", r.node],
    ["libtorch", `${r.libtorch.version} (${r.libtorch.libraries[0] ?? "?"})`],
    ["BLAS", `${r.blas.name}${r.blas.core ? `, core ${r.blas.core}` : ""}`],
    ["threads", `intra-op ${r.threads.intraOp} (MINDSEYE_NUM_THREADS), BLAS ${r.threads.blas ?? "n/a"} (MINDSEYE_BLAS_THREADS), inter-op ${r.threads.interOp}; ${r.threads.cores} cores (${r.threads.cpu})`],
    ["CUDA", r.cuda.available ? `available, ${r.cuda.devices} device(s)` : r.cuda.builtWith ? "built with CUDA, no device visible" : "not built with CUDA (LIBTORCH=<CUDA libtorch> bash scripts/setup.sh)"],
    ["allocator", r.allocator],
  ];
  for (const [k, v] of rows) console.log(`${k.padEnd(10)} ${v}`);
  if (r.blas.warning) console.log(`\nwarning: ${r.blas.warning}`);
}
