"""SGD (with optional momentum) and Adam, written out (docs/protocol.md §2-§4).

The update rules are exactly those of torch.optim.SGD (dampening 0, no Nesterov, no weight decay)
and torch.optim.Adam (no AMSGrad, no weight decay), single-tensor form. They are written here
because they are a few lines each, because every piece of state is then plain and explicit (the
oracle reset clears `state`; a checkpoint saves it), because one update must act on one model's
slice of a stacked weight (models.py), and because constructing a torch.optim optimizer imports
torch._dynamo, which costs about two seconds in every training job.
"""

from __future__ import annotations

import math

import torch


class MethodOptimizer:
    """The optimizer of the runs of a batch that share one method (a stretch of consecutive
    models; an Entropy-LR run has its own, its lr moving with its own entropy): `refs` are
    (parameter, slice of its model axis or None, gain-modulated?) as models.ModelBatch.param_refs
    gives them. SGD uses the method's `modulated_momentum` (None: its `momentum`) on modulated
    weights and `momentum` on the rest; Adam treats all alike. State per ref, in order (a
    checkpoint saves `state`)."""

    def __init__(self, method, refs: list[tuple[torch.Tensor, slice | None, bool]]):
        self.method, self.refs = method, refs
        mod = method.momentum if method.modulated_momentum is None else method.modulated_momentum
        self.momenta = [mod if modulated else method.momentum for _, _, modulated in refs]
        self.state: list[dict] = [{} for _ in refs]

    def reset(self) -> None:
        """Oracle reset at a context switch: momentum buffers, Adam moments and step counts dropped."""
        self.state = [{} for _ in self.refs]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        m = self.method
        for (p, sl, _), mu, state in zip(self.refs, self.momenta, self.state):
            if p.grad is None:
                continue
            w, g = (p, p.grad) if sl is None else (p[sl], p.grad[sl])
            if m.optimizer == "adam":
                adam_update(w, g, state, lr, m.beta1, m.beta2, m.eps)
            else:
                sgd_update(w, g, state, lr, mu)


# The update rules, on one tensor (a parameter, or one model's slice of a stacked one).

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
