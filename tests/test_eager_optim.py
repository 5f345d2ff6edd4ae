"""samrepro.engine.eager: torch.optim without torch._dynamo gives bitwise the same training (fresh processes,
since the switch is process-wide and pytest may already have imported torch._dynamo)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import hashlib, json, sys
import torch
if sys.argv[1] == "eager":
    from samrepro.engine.eager import use_eager_optimizers
    assert use_eager_optimizers()
from samrepro.optim import build_optimizer, get_setup, train_step

class Net(torch.nn.Sequential):
    def forward(self, x, y=None):
        return super().forward(x)

torch.manual_seed(0)
net = Net(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
setup = get_setup(sys.argv[2])
opt = build_optimizer(setup, net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False, rho=0.05)
sched = torch.optim.lr_scheduler.MultiStepLR(opt, [3], 0.2)
x, y = torch.randn(32, 6), torch.randint(0, 4, (32,))
for _ in range(6):
    train_step(net, opt, setup, x, y)
    sched.step()
opt.load_state_dict(opt.state_dict())
blob = b"".join(t.detach().numpy().tobytes() for t in net.state_dict().values())
print(json.dumps({"hash": hashlib.sha256(blob).hexdigest(), "dynamo": "torch._dynamo" in sys.modules}))
"""


def run(mode: str, setup: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, setup],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_eager_optimizers_train_bitwise_alike_without_importing_dynamo():
    stock, eager = run("stock", "AACE"), run("eager", "AACE")  # SAM's two passes over a torch SGD
    assert eager["hash"] == stock["hash"]
    assert stock["dynamo"] and not eager["dynamo"], (stock, eager)
