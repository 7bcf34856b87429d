"""SGD (with optional momentum) and Adam, written out (SPEC §2-§4).

The update rules are exactly those of torch.optim.SGD (dampening 0, no Nesterov, no weight decay)
and torch.optim.Adam (no AMSGrad, no weight decay), single-tensor form. They are written here
because they are a few lines each, because every piece of state is then plain and explicit (the
oracle reset clears `state`; a checkpoint saves it), and because constructing a torch.optim
optimizer imports torch._dynamo, which costs about two seconds in every training job.

Each optimizer has `param_groups` (dicts with "params", "lr" and the method's hyperparameters) and
`state` (per parameter), like torch's, so the training loop can set a group's lr.
"""

from __future__ import annotations

import math

import torch


class _Optimizer:
    def __init__(self, groups: list[dict], defaults: dict):
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def state_dict(self) -> dict:
        """State keyed by parameter position (as torch.optim does), plus the groups' settings."""
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        return {"state": {index[id(p)]: dict(s) for p, s in self.state.items()},
                "groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]}

    def load_state_dict(self, sd: dict) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        self.state = {params[int(i)]: dict(s) for i, s in sd["state"].items()}
        for group, saved in zip(self.param_groups, sd["groups"]):
            group.update(saved)


class SGD(_Optimizer):
    """p ← p − lr·b, b ← μ·b + ∇ (b = ∇ at the first step); μ = 0: plain SGD."""

    def __init__(self, groups: list[dict], lr: float, momentum: float = 0.0):
        super().__init__(groups, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    sgd_update(p, p.grad, self.state.setdefault(p, {}), group["lr"], group["momentum"])


class Adam(_Optimizer):
    """Adam with bias correction, as torch.optim.Adam computes it."""

    def __init__(self, groups: list[dict], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(groups, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    adam_update(p, p.grad, self.state.setdefault(p, {}), group["lr"], *group["betas"], group["eps"])


# The update rules, on one tensor (a parameter, or a batched model's slice of one: batched.py).

@torch.no_grad()
def sgd_update(p: torch.Tensor, grad: torch.Tensor, state: dict, lr: float, mu: float) -> None:
    d = grad
    if mu != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = d.clone()
        else:
            buf.mul_(mu).add_(d)
        d = buf
    p.add_(d, alpha=-lr)


@torch.no_grad()
def adam_update(p: torch.Tensor, g: torch.Tensor, state: dict, lr: float, b1: float, b2: float, eps: float) -> None:
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
    state["step"] += 1
    m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    step_size = lr / (1 - b1 ** t)
    denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
    p.addcdiv_(m, denom, value=-step_size)
