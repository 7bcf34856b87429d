"""Gain dynamics, networks and the method registry (SPEC §2-§4)."""

import math

import pytest
import torch

from stabgap.gain import GainControl, batch_entropy, fixed_point, gain_update
from stabgap.batched import stack_nets
from stabgap.methods import METHODS, resolve_method
from stabgap.optim import RunOptimizer
from stabgap.nets import build_net


def mlp(control, seed=0):
    return build_net("mlp", 10, (1, 28, 28), control, seed=seed)


def test_entropy_of_known_distributions():
    uniform = torch.zeros(3, 10)
    assert batch_entropy(uniform).item() == pytest.approx(math.log(10), rel=1e-6)
    certain = torch.tensor([[100.0, 0.0, 0.0]])
    assert batch_entropy(certain).item() == pytest.approx(0.0, abs=1e-6)
    two_equal = torch.tensor([[0.0, 0.0, -1e4], [5.0, -1e4, -1e4]])  # log 2 and 0: batch mean log(2)/2
    assert batch_entropy(two_equal).item() == pytest.approx(math.log(2) / 2, rel=1e-6)
    p = torch.tensor([0.5, 0.25, 0.25])  # entropy 1.5·log 2
    assert batch_entropy(p.log()[None]).item() == pytest.approx(1.5 * math.log(2), rel=1e-6)


def test_gain_recursion_matches_hand_computation():
    control = GainControl("entropy", g0=1.0, gamma=0.9, eta=0.4)
    net = mlp(control)
    net.train()
    x = torch.randn(8, 1, 28, 28)
    expected_g, H_prev = 1.0, 0.0
    for _ in range(5):
        logits = net(x)
        expected_g = 0.9 * expected_g + 0.1 * 1.0 + 0.4 * H_prev
        for layer in net.modulated().values():
            assert torch.allclose(layer.gain, torch.full_like(layer.gain, expected_g), atol=1e-6)
        H_prev = batch_entropy(logits).item()
        assert control.entropy.item() == pytest.approx(H_prev, rel=1e-6)
    assert expected_g > 1.0  # the entropy drive moved it


def test_gain_fixed_point():
    g = torch.ones(4)
    for _ in range(400):
        g = gain_update(g, 1.0, 0.9, 0.3 * 1.7)
    assert torch.allclose(g, torch.full((4,), fixed_point(1.0, 0.9, 0.3, 1.7)), atol=1e-5)
    assert fixed_point(1.0, 0.9, 0.3, 1.7) == pytest.approx(1.0 + 0.3 * 1.7 / 0.1)


def test_first_forward_uses_g0_and_evaluation_never_moves_gain():
    control = GainControl("entropy", g0=1.5, gamma=0.9, eta=0.4)
    net = mlp(control)
    x = torch.randn(4, 1, 28, 28)
    net.eval()
    for _ in range(3):
        net(x)
    assert all(torch.all(l.gain == 1.5) for l in net.modulated().values())
    assert control.entropy.item() == 0.0  # eval forwards do not record an entropy either
    net.train()
    out = net(x)  # first training forward: H = 0, so g = γ·g0 + (1 − γ)·g0 = g0
    assert all(torch.allclose(l.gain, torch.tensor(1.5)) for l in net.modulated().values())
    # the output is g0 ⊙ (x Wᵀ) at every layer with zero biases
    h = torch.relu(1.5 * x.flatten(1) @ net.fc1.weight.T)
    h = torch.relu(1.5 * h @ net.fc2.weight.T)
    assert torch.allclose(out, 1.5 * h @ net.out.weight.T, atol=1e-5)
    g_after_train = net.out.gain.clone()
    net.eval()
    net(x)
    assert torch.equal(net.out.gain, g_after_train)


def test_frozen_gain_never_moves():
    control = GainControl("frozen", g0=1.0)
    net = mlp(control)
    net.train()
    for _ in range(3):
        net(torch.randn(4, 1, 28, 28))
    assert all(torch.all(l.gain == 1.0) for l in net.modulated().values())


def test_gain_bump_pulse():
    control = GainControl("bump", g0=1.0, gamma=0.99, bump=0.99)
    net = mlp(control)
    net.train()
    control.pulse()
    net(torch.randn(2, 1, 28, 28))
    assert net.out.gain[0].item() == pytest.approx(0.99 + 0.01 + 0.99)
    net(torch.randn(2, 1, 28, 28))
    assert net.out.gain[0].item() == pytest.approx(0.99 * 1.99 + 0.01)


def test_mlp_shapes_init_and_untrained_biases():
    net = mlp(GainControl(), seed=3)
    assert net(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert net.fc1.weight.shape == (400, 784) and net.fc2.weight.shape == (400, 400)
    assert net.out.weight.shape == (10, 400)
    assert abs(net.fc1.weight.std().item() - 0.01) < 0.001
    assert abs(net.out.weight.std().item() - 0.05) < 0.005
    assert all(not l.bias.requires_grad and torch.all(l.bias == 0) for l in net.modulated().values())
    modulated, rest = net.parameter_groups()
    assert len(modulated) == 3 and rest == []


@pytest.mark.parametrize("size,features", [(32, 160), (84, 640)])
def test_resnet_shapes(size, features):
    net = build_net("resnet18_slim", 7, (3, size, size), GainControl(), seed=0)
    assert net.feature_dim == features
    assert net.head.weight.shape == (7, features)
    net.eval()
    assert net(torch.randn(2, 3, size, size)).shape == (2, 7)
    assert list(net.modulated()) == ["head"]
    assert not net.head.bias.requires_grad


def test_init_depends_on_seed_only():
    a, b, c = mlp(GainControl(), 1), mlp(GainControl(), 1), mlp(GainControl(), 2)
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_unknown_method_lists_known_names():
    with pytest.raises(ValueError, match="unknown method 'ngmsgd'.*ngm"):
        resolve_method("ngmsgd")
    with pytest.raises(ValueError, match="unknown setting.*lrate"):
        resolve_method("sgd", {"lrate": 0.1})
    with pytest.raises(ValueError, match="lr must be > 0"):
        resolve_method("sgd", {"lr": -0.1})
    with pytest.raises(ValueError, match="gamma"):
        resolve_method("ngm", {"gamma": 1.0})
    assert {"sgd", "msgd", "adam", "ngm", "fixed_gain", "entropy_lr", "msgd_reset", "adam_reset"} <= set(METHODS)


def _momenta(opt):
    return sorted({(modulated, mu) for (_, _, modulated), mu in zip(opt.refs, opt.momenta)})


def test_ngm_optimizer_split_on_resnet_and_mlp():
    ngm = resolve_method("ngm")
    resnet = build_net("resnet18_slim", 10, (3, 32, 32), ngm.gain_control(0.2), seed=0)
    trainable = [p for p in resnet.parameters() if p.requires_grad]
    batch = stack_nets([resnet])
    opt = RunOptimizer(ngm, batch.param_refs(0, 1))
    (head, sl, modulated), *rest = opt.refs
    assert head is batch.head.weight and sl == slice(0, 1) and modulated and opt.momenta[0] == 0.0
    assert len(rest) == len(trainable) - 1  # every conv and BN weight/bias, not the head's weight or bias
    assert set(opt.momenta[1:]) == {0.9} and not any(m for _, _, m in rest)
    assert all(p is not batch.head.bias for p, _, _ in opt.refs)
    # on the MLP every layer is modulated: plain SGD on all weights
    mlp_batch = stack_nets([mlp(ngm.gain_control(0.4))])
    assert _momenta(RunOptimizer(ngm, mlp_batch.param_refs(0, 1))) == [(True, 0.0)]
    msgd = RunOptimizer(resolve_method("msgd"), stack_nets([build_net("resnet18_slim", 10, (3, 32, 32),
                                                                      GainControl(), 0)]).param_refs(0, 1))
    assert set(msgd.momenta) == {0.9}


def test_reset_clears_optimizer_state():
    batch = stack_nets([mlp(GainControl())])
    opt = RunOptimizer(resolve_method("adam"), batch.param_refs(0, 1))
    batch.train()
    logits = batch(torch.randn(1, 4, 1, 28, 28))
    torch.nn.functional.cross_entropy(logits[0], torch.tensor([0, 1, 2, 3])).backward()
    opt.step(0.01)
    assert sum(bool(s) for s in opt.state) == 3
    opt.reset()
    assert not any(opt.state)


def test_stacked_gain_control_is_the_single_one_per_model():
    """R networks' dynamics stacked: one update equals each network's own update."""
    controls = [GainControl("entropy", g0=1.0, gamma=0.9, eta=0.4), GainControl("bump", g0=1.5, gamma=0.99, bump=0.5),
                GainControl("frozen", g0=2.0)]
    nets = [mlp(c, seed=i) for i, c in enumerate(controls)]
    x = torch.randn(3, 6, 1, 28, 28)
    batch = stack_nets([mlp(GainControl(*c.settings[0]), seed=i) for i, c in enumerate(controls)])
    batch.train()
    for n in nets:
        n.train()
    for step in range(4):
        if step == 2:
            batch.gain_control.pulse()
            for c in controls:
                c.pulse()
        out = batch(x)
        for m, n in enumerate(nets):
            assert torch.allclose(out[m], n(x[m]), atol=1e-5)
            assert torch.equal(batch.out.gain[m], n.out.gain)
            assert torch.equal(batch.gain_control.entropy[m], controls[m].entropy)


@pytest.mark.parametrize("kind", ["sgd", "msgd", "adam"])
def test_optimizers_match_torch(kind):
    torch.manual_seed(0)
    ours_p = [torch.randn(2, 5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    ref_p = [ours_p[0][1].detach().clone().requires_grad_(True), ours_p[1].detach().clone().requires_grad_(True)]
    method = resolve_method(kind)
    # a stacked parameter updated on one model's slice, and a parameter of one model alone
    ours = RunOptimizer(method, [(ours_p[0], slice(1, 2), True), (ours_p[1], None, False)])
    if kind == "adam":
        ref = torch.optim.Adam(ref_p, lr=0.01, foreach=False)
    else:
        ref = torch.optim.SGD(ref_p, lr=0.01, momentum=method.momentum)
    before = ours_p[0][0].detach().clone()
    for step in range(6):
        grads = [torch.randn_like(p) for p in ref_p]
        ours_p[0].grad = torch.stack([torch.randn_like(grads[0]), grads[0]])
        ours_p[1].grad = grads[1].clone()
        for q, g in zip(ref_p, grads):
            q.grad = g.clone()
        ours.step(0.01)
        ref.step()
    assert torch.equal(ours_p[0][0], before)  # the other model's slice is untouched
    ours_p = [ours_p[0][1], ours_p[1]]
    for p, q in zip(ours_p, ref_p):
        assert torch.allclose(p, q, atol=1e-7, rtol=1e-6)
