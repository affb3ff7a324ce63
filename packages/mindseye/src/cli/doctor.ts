// `mindseye doctor`: what the engine runs on (util/environment.ts), as a table or JSON.
import { doctorReport } from "../util/environment.js";

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
