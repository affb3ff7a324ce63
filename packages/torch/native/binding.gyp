{
  # Builds the @mindseye/torch addon against libtorch.
  #   Debian/Ubuntu: apt-get install libtorch-dev  (headers in /usr/include, libs in the multiarch dir)
  #   Any other libtorch (e.g. the one inside a pip-installed PyTorch, CUDA included):
  #     LIBTORCH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))') make build
  "variables": {
    "libtorch%": "<!(echo ${LIBTORCH:-})",
    "torch_include%": "<!(node -p \"process.env.LIBTORCH ? process.env.LIBTORCH + '/include' : '/usr/include'\")",
    "torch_lib%": "<!(node -p \"process.env.LIBTORCH ? process.env.LIBTORCH + '/lib' : '/usr/lib/' + require('child_process').execSync('gcc -print-multiarch').toString().trim()\")",
    "torch_cuda%": "<!(node -e \"const fs=require('fs');const d=process.env.LIBTORCH?process.env.LIBTORCH+'/lib':'';process.stdout.write(d&&fs.existsSync(d+'/libtorch_cuda.so')?'1':'0')\")",
    # c10d's Gloo backend lives in libtorch_cpu (and links libgloo itself); compiling against
    # ProcessGroupGloo.hpp needs Gloo's headers: Debian's libgloo-dev, or a libtorch that ships include/gloo.
    "torch_gloo%": "<!(node -e \"const fs=require('fs');const i=process.env.LIBTORCH?process.env.LIBTORCH+'/include':'/usr/include';process.stdout.write(fs.existsSync(i+'/gloo/algorithm.h')?'1':'0')\")",
    # NCCL (CUDA libtorch only): ProcessGroupNCCL.hpp includes nccl.h, which a pip-installed PyTorch
    # keeps in site-packages/nvidia/nccl/include; NCCL_INCLUDE=<dir> names another place.
    "nccl_include%": "<!(node -e \"const fs=require('fs');const L=process.env.LIBTORCH;const c=[process.env.NCCL_INCLUDE,L&&L+'/../nvidia/nccl/include',L&&L+'/include','/usr/include'].filter(Boolean);process.stdout.write(c.find(d=>fs.existsSync(d+'/nccl.h'))||'')\")"
  },
  "targets": [
    {
      "target_name": "mindseye_torch",
      "sources": ["tensor.cc", "ops.cc", "nn_ops.cc", "runtime.cc", "distributed.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(torch_include)",
        "<(torch_include)/torch/csrc/api/include"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "libraries": ["-L<(torch_lib)", "-Wl,-rpath,<(torch_lib)", "-ltorch", "-ltorch_cpu", "-lc10", "-ldl"],
      # gyp reads integer-looking strings as numbers: the flags compare with 1, not '1'.
      "conditions": [
        ["torch_cuda==1", {
          "defines": ["MINDSEYE_WITH_CUDA"],
          "libraries": ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"]
        }],
        ["torch_gloo==1", { "defines": ["MINDSEYE_WITH_GLOO"] }],
        ["torch_cuda==1 and nccl_include!=''", {
          "defines": ["MINDSEYE_WITH_NCCL"],
          "include_dirs": ["<(nccl_include)"]
        }]
      ]
    }
  ]
}
