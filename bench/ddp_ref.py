"""bench:ddp's PyTorch side (bench/ddp.ts starts 2 ranks of it with torchrun's variables): the
reference decoder of engine_ref.py under torch.nn.parallel.DistributedDataParallel over Gloo,
rank 0's weights from the fixture, this rank's half of the batch, AdamW; rank 0 prints one JSON
line with the step times (after one warm-up step) and losses.

    python3 bench/ddp_ref.py FIXTURE STEPS CONFIG_JSON
"""
import json
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from engine_ref import Decoder
from ref_common import load_safetensors


class DdpDecoder(Decoder):
    # DDP prepares its gradient reduction in forward(); the decoder's step is loss(), so forward is loss.
    def forward(self, tokens, targets):
        return self.loss(tokens, targets)


def main():
    fixture, steps, cfg = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank, b = dist.get_rank(), cfg["batch"]
    tensors, _ = load_safetensors(fixture)
    model = DdpDecoder(cfg["vocabSize"], cfg["width"], cfg["layers"], cfg["heads"], cfg["maxSeq"])
    model.load_state_dict({k: v for k, v in tensors.items() if k not in ("tokens", "targets")})
    tokens, targets = tensors["tokens"][rank * b:(rank + 1) * b], tensors["targets"][rank * b:(rank + 1) * b]
    ddp = DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weightDecay"])
    times, losses = [], []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = ddp(tokens, targets)
        loss.backward()
        opt.step()
        if i > 0:
            times.append((time.perf_counter() - t0) * 1000)
        losses.append(loss.item())
    if rank == 0:
        print(json.dumps({"ms": times, "losses": losses}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
