"""The 1-D toy model of figure 1 (docs/protocol.md §7.1): why a transient gain acts as a fast weight.

Input x = 1 throughout, so a unit's output is its effective weight. No data, no torch.

Panel B (deterministic, 300 steps, target +1 except −1 at steps 144–153; outputs recorded before
each update):
  slow weight       w ← w + 0.1·(T − w)                                   (w from 0)
  fast + slow pair  y = w_f + w_s, e = T − y, w_f ← 0.9·w_f + 0.2·e, w_s ← w_s + 0.1·e
  gain-modulated    y = g·w, e = T − y, w ← w + 0.1·g·e,
                    g ← 0.9·g + 0.1·1 + 0.7·|w·e|  (new w, the error before the update)
Panels A and C (50 noisy runs of 100 steps, target 0 then 1 from step 44): each step draws
g̃ = g + 0.05·N(0,1), w̃ = w + 0.025·N(0,1), e = T − g̃·w̃, records g̃, the slow part g0·w̃, the fast
part (g̃ − g0)·w̃ and the effective weight g̃·w̃, then w ← w + α·g̃·e, g ← γ·g + (1 − γ)·g0 + c·|w·e|.
The drive of the toy is this error term, not an entropy. The original did not seed this simulation;
we do.
"""

from __future__ import annotations

import numpy as np


def step_target(n_steps: int = 300, flip: tuple[int, int] = (144, 153)) -> np.ndarray:
    target = np.ones(n_steps)
    target[flip[0]:flip[1] + 1] = -1.0
    return target


def deterministic_models(target: np.ndarray) -> dict[str, np.ndarray]:
    """Panel B: outputs of the three learners, recorded before each update."""
    w = 0.0
    wf = ws = 0.0
    wg, g = 1.0, 1.0
    out = {"slow": [], "fast_slow": [], "gain": [], "gain_value": []}
    for T in target:
        out["slow"].append(w)
        w = w + 0.1 * (T - w)

        y = wf + ws
        out["fast_slow"].append(y)
        e = T - y
        wf, ws = 0.9 * wf + 0.2 * e, ws + 0.1 * e

        y = g * wg
        out["gain"].append(y)
        out["gain_value"].append(g)
        e = T - y
        wg = wg + 0.1 * g * e
        g = 0.9 * g + 0.1 * 1.0 + 0.7 * abs(wg * e)
    return {k: np.asarray(v) for k, v in out.items()}


def noisy_gain_runs(n_runs: int = 50, n_steps: int = 100, switch: int = 44, alpha: float = 0.1,
                    g0: float = 1.0, gamma: float = 0.5, drive: float = 1.0, gain_noise: float = 0.05,
                    weight_noise: float = 0.025, seed: int = 0) -> dict[str, np.ndarray]:
    """Panels A and C: arrays [n_runs, n_steps] of the recorded g̃ and the slow, fast and effective weights."""
    rng = np.random.default_rng(seed)
    target = np.where(np.arange(n_steps) >= switch, 1.0, 0.0)
    rec = {k: np.empty((n_runs, n_steps)) for k in ("gain", "slow", "fast", "effective")}
    for r in range(n_runs):
        w, g = 0.0, g0
        for t in range(n_steps):
            gt = g + gain_noise * rng.standard_normal()
            wt = w + weight_noise * rng.standard_normal()
            e = target[t] - gt * wt
            rec["gain"][r, t], rec["slow"][r, t] = gt, g0 * wt
            rec["fast"][r, t], rec["effective"][r, t] = (gt - g0) * wt, gt * wt
            w = w + alpha * gt * e
            g = gamma * g + (1 - gamma) * g0 + drive * abs(w * e)
    rec["target"] = target
    return rec
