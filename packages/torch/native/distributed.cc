// torch.distributed's c10d for JavaScript: a TCPStore rendezvous, then a Gloo process group on
// CPU (or NCCL, in builds against a CUDA libtorch that ships nccl.h). Collectives are
// synchronous, as torch.distributed's default (async_op=False): each call waits on its c10d Work
// with the group's timeout and turns any failure (a peer that died, a timeout, a bad tensor) into
// a JavaScript Error naming the rank, the operation and c10d's own message.
//
// libtorch 1.13 vs 2.x: in 1.13 ProcessGroupGloo and ProcessGroupNCCL derive from
// c10d::ProcessGroup; from 2.0 they derive from c10d::Backend (ProcessGroup became a facade that
// dispatches to backends). Both expose the same collective methods and the same
// `Options::create(...)` factories, so this file holds the backend through `BackendBase` and is
// otherwise one code path.
//
// Groups cross to JavaScript as small integer ids into a table (few groups live per process).
#include "common.h"
#include <c10/core/GradMode.h>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MINDSEYE_WITH_GLOO
#define USE_C10D_GLOO 1  // ProcessGroupGloo.hpp is empty without it (libtorch's own build sets it).
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/version.h>
#ifdef MINDSEYE_WITH_NCCL
#define USE_C10D_NCCL 1
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace mindseye {

#if TORCH_VERSION_MAJOR >= 2
using BackendBase = c10d::Backend;
#else
using BackendBase = c10d::ProcessGroup;
#endif

struct Group {
  std::string backend;
  int rank;
  int size;
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<BackendBase> pg;
};

static std::vector<std::unique_ptr<Group>> groups;  // index = id; destroyed groups leave a null

static Group& GroupOf(const Napi::CallbackInfo& info) {
  int64_t id = I(info, 0);
  if (id < 0 || id >= static_cast<int64_t>(groups.size()) || !groups[id]) {
    throw Napi::Error::New(info.Env(), "torch.distributed: the process group was destroyed (or never created)");
  }
  return *groups[id];
}

// The message of whatever a c10d call threw, without libtorch's C++ backtrace.
static std::string MessageOf(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

static Napi::Error DistError(const Napi::Env& env, const Group& g, const char* op, const std::string& msg) {
  return Napi::Error::New(env, "torch.distributed: " + std::string(op) + " failed on rank " + std::to_string(g.rank) +
                                   " of " + std::to_string(g.size) + " (" + g.backend + ", timeout " +
                                   std::to_string(g.timeout.count()) + " ms): " + msg);
}

// Issues a collective and waits for it; any failure becomes a DistError.
template <typename Issue>
static void Run(const Napi::Env& env, Group& g, const char* op, Issue issue) {
  try {
    c10::intrusive_ptr<c10d::Work> work = issue();
    if (!work->wait(g.timeout)) std::rethrow_exception(work->exception());
  } catch (const std::exception& e) {
    throw DistError(env, g, op, MessageOf(e));
  }
}

static c10d::ReduceOp ReduceOpOf(const Napi::Env& env, const std::string& name) {
  if (name == "sum") return c10d::ReduceOp::SUM;
  if (name == "product") return c10d::ReduceOp::PRODUCT;
  if (name == "min") return c10d::ReduceOp::MIN;
  if (name == "max") return c10d::ReduceOp::MAX;
  throw Napi::Error::New(env, "torch.distributed: unknown reduce op \"" + name + "\" (expected sum, avg, product, min or max)");
}

// Collectives need dense contiguous tensors; a strided view is reduced through a contiguous
// copy and written back, so in-place semantics hold for any tensor the caller passes.
static at::Tensor Dense(const at::Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }
static void WriteBack(const at::Tensor& dst, const at::Tensor& src) {
  if (!dst.is_same(src)) dst.copy_(src);
}

static std::string BuiltBackends() {
  std::string s;
#ifdef MINDSEYE_WITH_GLOO
  s += "gloo ";
#endif
#ifdef MINDSEYE_WITH_NCCL
  s += "nccl ";
#endif
  return s.empty() ? "none" : s.substr(0, s.size() - 1);
}

// (backend, masterAddr, masterPort, rank, worldSize, timeoutMs, localRank, agentStorePrefix) -> group id
static Napi::Value distInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = std::make_unique<Group>();
  g->backend = S(info, 0);
  std::string host = S(info, 1);
  int port = static_cast<int>(I(info, 2));
  g->rank = static_cast<int>(I(info, 3));
  g->size = static_cast<int>(I(info, 4));
  g->timeout = std::chrono::milliseconds(I(info, 5));
  int localRank = static_cast<int>(I(info, 6));
  (void)localRank;  // only NCCL builds use it
  // Non-empty under torchrun (TORCHELASTIC_USE_AGENT_STORE): its agent already serves the store
  // at masterAddr:masterPort, and the ranks use it under this prefix, as torch's env:// does.
  const std::string agentStorePrefix = S(info, 7);
  const std::string where = "rank " + std::to_string(g->rank) + " of " + std::to_string(g->size);
  const std::string built = BuiltBackends();
  if ((" " + built + " ").find(" " + g->backend + " ") == std::string::npos) {
    throw Napi::Error::New(env, "torch.distributed: backend \"" + g->backend + "\" is not in this build, which has " + built +
                                    " (Gloo needs its headers at build time: libgloo-dev; NCCL needs a CUDA libtorch and"
                                    " nccl.h, see native/binding.gyp)");
  }

  // 1. rendezvous: rank 0 serves the store, everyone (rank 0 included) connects as a client and
  //    waits until all worldSize clients have arrived or the timeout passes. Under torchrun's agent
  //    every rank is a client of the agent's store (the process group's own rendezvous then waits).
  const bool agentStore = !agentStorePrefix.empty();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = !agentStore && g->rank == 0;
    so.numWorkers = static_cast<std::size_t>(g->size);
    so.waitWorkers = !agentStore;
    so.timeout = g->timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(host, so);
    if (agentStore) {
      g->store = c10::make_intrusive<c10d::PrefixStore>(agentStorePrefix, tcp);
    } else {
      g->store = tcp;
    }
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, "torch.distributed: " + where + " could not join the TCPStore at " + host + ":" +
                                    std::to_string(port) + " within " + std::to_string(g->timeout.count()) +
                                    " ms: " + MessageOf(e) +
                                    (agentStore ? " (torchrun's agent serves this store: is it still running?)"
                                    : g->rank == 0 ? " (is the port in use? choose another MASTER_PORT)"
                                                  : " (are all ranks started, with the same MASTER_ADDR:MASTER_PORT?)"));
  }

  // 2. the backend, connected through the store.
  try {
#ifdef MINDSEYE_WITH_GLOO
    if (g->backend == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
      // As torch.distributed: GLOO_SOCKET_IFNAME names the interface, else the host's address.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      opts->devices.push_back(ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                                : c10d::ProcessGroupGloo::createDefaultDevice());
      g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, g->rank, g->size, opts);
    }
#endif
#ifdef MINDSEYE_WITH_NCCL
    if (g->backend == "nccl") {
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(localRank));  // one GPU per local rank
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = g->timeout;
      g->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, g->rank, g->size, opts);
    }
#endif
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, "torch.distributed: " + where + " could not connect the " + g->backend +
                                    " process group through the TCPStore at " + host + ":" + std::to_string(port) +
                                    " within " + std::to_string(g->timeout.count()) + " ms: " + MessageOf(e) +
                                    " (are all " + std::to_string(g->size) +
                                    " ranks started, with the same MASTER_ADDR:MASTER_PORT and WORLD_SIZE?)");
  }
  groups.push_back(std::move(g));
  return Napi::Number::New(env, static_cast<double>(groups.size() - 1));
}

static Napi::Value distDestroy(const Napi::CallbackInfo& info) {
  GroupOf(info);
  groups[I(info, 0)].reset();
  return info.Env().Undefined();
}

static Napi::Value distBackends(const Napi::CallbackInfo& info) {
  auto out = Napi::Array::New(info.Env());
  uint32_t n = 0;
#ifdef MINDSEYE_WITH_GLOO
  out.Set(n++, "gloo");
#endif
#ifdef MINDSEYE_WITH_NCCL
  out.Set(n++, "nccl");
#endif
  (void)n;
  return out;
}

// (group, tensor, op) in place. "avg" is a sum divided by the world size: Gloo has no AVG.
static Napi::Value distAllReduce(const Napi::CallbackInfo& info) {
  Group& g = GroupOf(info);
  c10::NoGradGuard noGrad;  // c10d writes tensor memory; autograd must not see the in-place ops
  const at::Tensor& t = T(info, 1);
  std::string op = S(info, 2);
  c10d::AllreduceOptions o;
  o.reduceOp = ReduceOpOf(info.Env(), op == "avg" ? "sum" : op);
  std::vector<at::Tensor> ts{Dense(t)};
  Run(info.Env(), g, "all_reduce", [&] { return g.pg->allreduce(ts, o); });
  if (op == "avg") ts[0].div_(g.size);
  WriteBack(t, ts[0]);
  return info.Env().Undefined();
}

// (group, tensor, src) in place.
static Napi::Value distBroadcast(const Napi::CallbackInfo& info) {
  Group& g = GroupOf(info);
  c10::NoGradGuard noGrad;  // c10d writes tensor memory; autograd must not see the in-place ops
  const at::Tensor& t = T(info, 1);
  c10d::BroadcastOptions o;
  o.rootRank = I(info, 2);
  std::vector<at::Tensor> ts{Dense(t)};
  Run(info.Env(), g, "broadcast", [&] { return g.pg->broadcast(ts, o); });
  WriteBack(t, ts[0]);
  return info.Env().Undefined();
}

// (group, tensor) -> one tensor per rank, in rank order.
static Napi::Value distAllGather(const Napi::CallbackInfo& info) {
  Group& g = GroupOf(info);
  std::vector<at::Tensor> in{Dense(T(info, 1))};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < g.size; ++r) out[0].push_back(at::empty_like(in[0]));
  Run(info.Env(), g, "all_gather", [&] { return g.pg->allgather(out, in); });
  return WrapList(info.Env(), out[0]);
}

// (group, inputs: one tensor per rank, op) -> this rank's reduced tensor. Gloo (1.13, and 2.x
// before 2.7) has no reduce_scatter: it is an all_reduce of the stacked inputs, keeping this
// rank's slice (twice the traffic of a true reduce-scatter; torch's own Gloo fallback does the same).
static Napi::Value distReduceScatter(const Napi::CallbackInfo& info) {
  Group& g = GroupOf(info);
  c10::NoGradGuard noGrad;  // c10d writes tensor memory; autograd must not see the in-place ops
  std::vector<at::Tensor> inputs = TensorList(info[1]);
  std::string op = S(info, 2);
  if (static_cast<int>(inputs.size()) != g.size) {
    throw DistError(info.Env(), g, "reduce_scatter",
                    "expected one input per rank (" + std::to_string(g.size) + "), got " + std::to_string(inputs.size()));
  }
  c10d::ReduceOp rop = ReduceOpOf(info.Env(), op == "avg" ? "sum" : op);
  at::Tensor out;
  if (g.backend == "gloo") {
    c10d::AllreduceOptions o;
    o.reduceOp = rop;
    std::vector<at::Tensor> ts;
    try {
      ts.push_back(at::stack(inputs));
    } catch (const std::exception& e) {
      throw DistError(info.Env(), g, "reduce_scatter", "inputs must share one shape and dtype: " + MessageOf(e));
    }
    Run(info.Env(), g, "reduce_scatter", [&] { return g.pg->allreduce(ts, o); });
    out = ts[0].select(0, g.rank).clone();
  } else {
    c10d::ReduceScatterOptions o;
    o.reduceOp = rop;
    std::vector<std::vector<at::Tensor>> in{std::vector<at::Tensor>()};
    for (const auto& t : inputs) in[0].push_back(Dense(t));
    std::vector<at::Tensor> outs{at::empty_like(in[0][g.rank])};
    Run(info.Env(), g, "reduce_scatter", [&] { return g.pg->reduce_scatter(outs, in, o); });
    out = outs[0];
  }
  if (op == "avg") out.div_(g.size);
  return Wrap(info.Env(), out);
}

static Napi::Value distBarrier(const Napi::CallbackInfo& info) {
  Group& g = GroupOf(info);
  Run(info.Env(), g, "barrier", [&] { return g.pg->barrier(c10d::BarrierOptions()); });
  return info.Env().Undefined();
}

void InitDistributed(Napi::Env env, Napi::Object exports) {
  MINDSEYE_EXPORT(exports, distInit);
  MINDSEYE_EXPORT(exports, distDestroy);
  MINDSEYE_EXPORT(exports, distBackends);
  MINDSEYE_EXPORT(exports, distAllReduce);
  MINDSEYE_EXPORT(exports, distBroadcast);
  MINDSEYE_EXPORT(exports, distAllGather);
  MINDSEYE_EXPORT(exports, distReduceScatter);
  MINDSEYE_EXPORT(exports, distBarrier);
}

}  // namespace mindseye
