"""Method registry (docs/protocol.md §2-§4): one entry per method, selected by name from the config.

A method is its optimizer, its gain dynamics and its reaction to a context switch. The fields of a
`Method` are the defaults; `config.yaml` may override any of them per method (`resolve_method`).
A method's entry also holds how tables and figures show it (`label`, `colour`). Adding a method is
one `register(Method(...))` call, here or in a plugin module named under the config's `plugins:`,
plus its name and settings in the config. This module imports no torch (planning reads it).

Parameter groups: every network splits its trainable parameters into the weights of its
gain-modulated layers and the rest (models.ModelBatch.param_refs, optim.MethodOptimizer). On the MLP every layer is
modulated; on the ResNet only the head. `momentum` applies to the rest; `modulated_momentum`
(None = same as `momentum`) to the modulated weights. So NGM-SGD is momentum 0.9 on the ResNet
backbone and plain SGD on its head, and plain SGD everywhere on the MLP (docs/protocol.md §2, §3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.01
    momentum: float = 0.0
    modulated_momentum: float | None = None
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    gain: str = "frozen"  # "frozen", "entropy" or "bump" (gain.GainControl)
    g0: float = 1.0
    gamma: float = 0.0
    eta: float | None = None  # None: the benchmark's η (docs/protocol.md §5 table)
    bump: float = 0.0
    lr_drive: bool = False  # Entropy-LR: the gain recursion drives an lr multiplier instead
    reset_on_switch: bool = False  # oracle: clear the optimizer state at every context switch
    label: str = ""  # its name in tables and figures (default: the registry name)
    colour: str = "black"  # its colour in every figure (a matplotlib colour)
    note: str = ""  # what a reader of a table with this method must know (added to the table's caption)

    def settings(self) -> dict:
        """Every value that shapes a run's result (all fields but its names and how it is shown): what
        a run's settings and hash hold, so that changing a registry default reruns its runs."""
        return {f: getattr(self, f) for f in SETTING_FIELDS}

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def reads_out_gain(self) -> bool:
        """Its gain moves with the entropy of its outputs: figure 4 and the gain rows read it out."""
        return self.gain == "entropy" and not self.lr_drive

    def gain_settings(self, benchmark_eta: float):
        """Its gain dynamics (gain.GainSettings) on a benchmark with this η."""
        from .gain import GainSettings

        if self.gain == "entropy":
            return GainSettings("entropy", g0=self.g0, gamma=self.gamma, eta=self.eta_or(benchmark_eta))
        if self.gain == "bump":
            return GainSettings("bump", g0=self.g0, gamma=self.gamma, bump=self.bump)
        return GainSettings("frozen", g0=self.g0)

    def eta_or(self, benchmark_eta: float) -> float:
        return benchmark_eta if self.eta is None else self.eta


# the fields that are not settings: the entry's name and how tables and figures show it
SHOWN_FIELDS = ("name", "description", "label", "colour", "note")
SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(Method) if f.name not in SHOWN_FIELDS)

METHODS: Registry[Method] = Registry("method")
register = METHODS.register


register(Method("sgd", "SGD, no momentum; gain frozen at 1", label="SGD", colour="dimgray"))
register(Method("msgd", "SGD with momentum 0.9 (no Nesterov); gain frozen at 1", momentum=0.9,
                label="MSGD", colour="royalblue"))
register(Method("adam", "Adam (0.9, 0.999, 1e-8); gain frozen at 1", optimizer="adam",
                label="Adam", colour="mediumseagreen"))
register(Method("ngm", "NGM-SGD: entropy-driven gain; plain SGD on modulated weights, momentum 0.9 elsewhere",
                momentum=0.9, modulated_momentum=0.0, gain="entropy", gamma=0.9,
                label="NGM-SGD", colour="darkorange"))
# Variants named in later versions of the paper; their definitions are assumed (docs/protocol.md §4).
register(Method("fixed_gain", "NGM-SGD's optimizer with the gain held at a constant g0 (no entropy drive)",
                momentum=0.9, modulated_momentum=0.0, label="fixed gain", colour="goldenrod",
                note="Fixed gain is NGM-SGD's optimizer with the gain held at g0. On the MLP every layer is "
                     "gain-modulated, so every weight is in the momentum-0 group: with g0 = 1 it is plain SGD, "
                     "run for run. On the ResNet it differs from MSGD only in the head's momentum (0, not 0.9)."))
register(Method("entropy_lr", "NGM-SGD's optimizer; the γ/η entropy recursion drives an lr multiplier",
                momentum=0.9, modulated_momentum=0.0, gamma=0.9, lr_drive=True, label="Entropy-LR", colour="crimson"))
register(Method("msgd_reset", "MSGD with its state cleared at every context switch (oracle)",
                momentum=0.9, reset_on_switch=True, label="MSGD + reset", colour="lightsteelblue"))
register(Method("adam_reset", "Adam with its state cleared at every context switch (oracle)",
                optimizer="adam", reset_on_switch=True, label="Adam + reset", colour="darkseagreen"))
register(Method("gain_bump", "oracle gain bump at the first iteration of each context, no entropy drive",
                momentum=0.9, modulated_momentum=0.0, gain="bump", gamma=0.99, bump=0.99,
                label="gain bump", colour="peru"))


def method_label(name: str) -> str:
    """How tables and figures name a method (its registry label; the name itself if unregistered)."""
    return METHODS[name].display if name in METHODS else name


def method_colour(name: str) -> str:
    return METHODS[name].colour if name in METHODS else "black"


def get_method(name: str) -> Method:
    return METHODS.get(name)


def resolve_method(name: str, overrides: dict | None = None) -> Method:
    """The registered method `name` with the config's settings applied on top of its defaults."""
    method = get_method(name)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(SETTING_FIELDS))
    if unknown:
        raise ValueError(f"method {name!r}: unknown setting(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(SETTING_FIELDS))}")
    method = dataclasses.replace(method, **overrides)
    if method.optimizer not in ("sgd", "adam"):
        raise ValueError(f"method {name!r}: optimizer must be 'sgd' or 'adam', got {method.optimizer!r}")
    if not method.lr > 0:
        raise ValueError(f"method {name!r}: lr must be > 0, got {method.lr}")
    if not 0.0 <= method.gamma < 1.0:
        raise ValueError(f"method {name!r}: gamma must lie in [0, 1), got {method.gamma}")
    return method
