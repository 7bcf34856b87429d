"""Gain dynamics, networks and the method registry (docs/protocol.md §2-§4)."""

import math

import pytest
import torch

from stabgap.archs import get_arch
from stabgap.gain import GainSettings, batch_entropy, fixed_point, gain_update
from stabgap.methods import METHODS, resolve_method
from stabgap.models import GainLinear, build_models
from stabgap.optim import MethodOptimizer


def mlp(settings=GainSettings(), seed=0):
    """A batch of one MLP."""
    return build_models("mlp", 10, (1, 28, 28), [seed], [settings])


def train_step(net, x):
    """What the trainer does around a training forward: the gain update, the forward, the entropy kept."""
    net.gain_control.update()
    logits = net(x)
    net.gain_control.observe(logits)
    return logits


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
    net = mlp(GainSettings("entropy", g0=1.0, gamma=0.9, eta=0.4))
    net.train()
    x = torch.randn(8, 1, 28, 28)
    expected_g, H_prev = 1.0, 0.0
    for _ in range(5):
        logits = train_step(net, x)
        expected_g = 0.9 * expected_g + 0.1 * 1.0 + 0.4 * H_prev
        for layer in net.modulated().values():
            assert torch.allclose(layer.gain, torch.full_like(layer.gain, expected_g), atol=1e-6)
        H_prev = batch_entropy(logits).item()
        assert net.gain_control.entropy.item() == pytest.approx(H_prev, rel=1e-6)
    assert expected_g > 1.0  # the entropy drive moved it


def test_gain_fixed_point():
    g = torch.ones(4)
    for _ in range(400):
        g = gain_update(g, 1.0, 0.9, 0.3 * 1.7)
    assert torch.allclose(g, torch.full((4,), fixed_point(1.0, 0.9, 0.3, 1.7)), atol=1e-5)
    assert fixed_point(1.0, 0.9, 0.3, 1.7) == pytest.approx(1.0 + 0.3 * 1.7 / 0.1)


def test_first_update_uses_g0_and_a_forward_never_moves_gain():
    net = mlp(GainSettings("entropy", g0=1.5, gamma=0.9, eta=0.4))
    x = torch.randn(4, 1, 28, 28)
    for mode in (net.eval, net.train):  # a forward, in either mode, moves nothing
        mode()
        for _ in range(3):
            net(x)
        assert all(torch.all(l.gain == 1.5) for l in net.modulated().values())
        assert net.gain_control.entropy.item() == 0.0
    out = train_step(net, x)[0]  # first iteration: H = 0, so g = γ·g0 + (1 − γ)·g0 = g0
    assert all(torch.allclose(l.gain, torch.tensor(1.5)) for l in net.modulated().values())
    # the output is g0 ⊙ (x Wᵀ) at every layer with zero biases
    h = torch.relu(1.5 * x.flatten(1) @ net.fc["fc1"].weight[0].T)
    h = torch.relu(1.5 * h @ net.fc["fc2"].weight[0].T)
    assert torch.allclose(out, 1.5 * h @ net.fc["out"].weight[0].T, atol=1e-5)
    g_after_train = net.fc["out"].gain.clone()
    net.eval()
    net(x)
    assert torch.equal(net.fc["out"].gain, g_after_train)


def test_frozen_gain_never_moves():
    net = mlp(GainSettings("frozen", g0=1.0))
    net.train()
    for _ in range(3):
        train_step(net, torch.randn(4, 1, 28, 28))
    assert all(torch.all(l.gain == 1.0) for l in net.modulated().values())


def test_gain_bump_pulse():
    net = mlp(GainSettings("bump", g0=1.0, gamma=0.99, bump=0.99))
    net.train()
    net.gain_control.pulse()
    train_step(net, torch.randn(2, 1, 28, 28))
    assert net.fc["out"].gain[0, 0].item() == pytest.approx(0.99 + 0.01 + 0.99)
    train_step(net, torch.randn(2, 1, 28, 28))
    assert net.fc["out"].gain[0, 0].item() == pytest.approx(0.99 * 1.99 + 0.01)


def test_mlp_shapes_init_and_untrained_biases():
    net = mlp(seed=3)
    assert net(torch.randn(5, 1, 28, 28))[0].shape == (5, 10)
    fc1, fc2, out = net.fc["fc1"].weight[0], net.fc["fc2"].weight[0], net.fc["out"].weight[0]
    assert fc1.shape == (400, 784) and fc2.shape == (400, 400)
    assert out.shape == (10, 400)
    assert abs(fc1.std().item() - 0.01) < 0.001
    assert abs(out.std().item() - 0.05) < 0.005
    # biases are buffers (never trained) and zero
    assert all(torch.all(l.bias == 0) for l in net.modulated().values())
    assert {name for name, _ in net.named_parameters()} == {"fc.fc1.weight", "fc.fc2.weight", "fc.out.weight"}
    refs = net.param_refs(0, 1)
    assert len([r for r in refs if r[2]]) == 3 and [r for r in refs if not r[2]] == []


@pytest.mark.parametrize("size,features", [(32, 160), (84, 640)])
def test_resnet_shapes(size, features):
    net = build_models("resnet18_slim", 7, (3, size, size), [0], [GainSettings()])
    assert get_arch("resnet18_slim").features((3, size, size)) == features
    assert net.head.weight.shape == (1, 7, features)
    net.eval()
    assert net(torch.randn(2, 3, size, size)).shape == (1, 2, 7)
    assert list(net.modulated()) == ["head"]
    assert "head.bias" not in dict(net.named_parameters())


def test_init_depends_on_seed_only():
    a, b, c = mlp(seed=1), mlp(seed=1), mlp(seed=2)
    assert torch.equal(a.fc["fc1"].weight, b.fc["fc1"].weight)
    assert not torch.equal(a.fc["fc1"].weight, c.fc["fc1"].weight)


def test_a_batch_of_models_initialises_each_as_alone():
    """Model m of a batch draws exactly what a batch of one with its seed draws."""
    for net, K, image in (("mlp", 10, (1, 28, 28)), ("resnet18_slim", 10, (3, 32, 32))):
        batch = build_models(net, K, image, [5, 6], [GainSettings()] * 2)
        for m, seed in enumerate((5, 6)):
            one = build_models(net, K, image, [seed], [GainSettings()])
            for layer, single in zip(batch.modulated().values(), one.modulated().values()):
                assert torch.equal(layer.weight[m], single.weight[0])
            if net == "resnet18_slim":
                assert all(torch.equal(p, q) for p, q in zip(batch.backbones[m].parameters(),
                                                             one.backbones[0].parameters()))


def test_default_linear_draws_are_torch_own():
    """GainLinear.init_model draws what nn.Linear's own initialisation draws, weight then bias, then
    the N(0, std²) weights; the generator ends where a lone nn.Linear + normal_ leaves it."""
    torch.manual_seed(7)
    ref = torch.nn.Linear(30, 20)
    with torch.no_grad():
        ref.weight.normal_(0.0, 0.05)
    after_ref = torch.rand(3)
    torch.manual_seed(7)
    layer = GainLinear(2, 30, 20)
    layer.init_model(1, 0.05)
    assert torch.equal(layer.weight[1], ref.weight) and torch.equal(torch.rand(3), after_ref)
    torch.manual_seed(7)
    ref = torch.nn.Linear(30, 20)  # no std: PyTorch's default weights
    torch.manual_seed(7)
    layer.init_model(0, None)
    assert torch.equal(layer.weight[0], ref.weight)


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
    batch = build_models("resnet18_slim", 10, (3, 32, 32), [0], [ngm.gain_settings(0.2)])
    trainable = [p for p in batch.parameters() if p.requires_grad]
    opt = MethodOptimizer(ngm, batch.param_refs(0, 1))
    (head, sl, modulated), *rest = opt.refs
    assert head is batch.head.weight and sl == slice(0, 1) and modulated and opt.momenta[0] == 0.0
    assert len(rest) == len(trainable) - 1  # every conv and BN weight/bias, not the head's weight or bias
    assert set(opt.momenta[1:]) == {0.9} and not any(m for _, _, m in rest)
    assert all(p is not batch.head.bias for p, _, _ in opt.refs)
    # on the MLP every layer is modulated: plain SGD on all weights
    mlp_batch = mlp(ngm.gain_settings(0.4))
    assert _momenta(MethodOptimizer(ngm, mlp_batch.param_refs(0, 1))) == [(True, 0.0)]
    msgd = MethodOptimizer(resolve_method("msgd"), build_models("resnet18_slim", 10, (3, 32, 32), [0],
                                                                [GainSettings()]).param_refs(0, 1))
    assert set(msgd.momenta) == {0.9}


def test_reset_clears_optimizer_state():
    batch = mlp()
    opt = MethodOptimizer(resolve_method("adam"), batch.param_refs(0, 1))
    batch.train()
    logits = batch(torch.randn(1, 4, 1, 28, 28))
    torch.nn.functional.cross_entropy(logits[0], torch.tensor([0, 1, 2, 3])).backward()
    opt.step(0.01)
    assert sum(bool(s) for s in opt.state) == 3
    opt.reset()
    assert not any(opt.state)


def test_the_gain_control_of_a_batch_is_each_models_own():
    """R models' dynamics in one GainControl: one update equals each model's own update."""
    settings = [GainSettings("entropy", g0=1.0, gamma=0.9, eta=0.4), GainSettings("bump", g0=1.5, gamma=0.99, bump=0.5),
                GainSettings("frozen", g0=2.0)]
    nets = [mlp(c, seed=i) for i, c in enumerate(settings)]
    x = torch.randn(3, 6, 1, 28, 28)
    batch = build_models("mlp", 10, (1, 28, 28), [0, 1, 2], settings)
    batch.train()
    for n in nets:
        n.train()
    for step in range(4):
        if step == 2:
            batch.gain_control.pulse()
            for n in nets:
                n.gain_control.pulse()
        out = train_step(batch, x)
        for m, n in enumerate(nets):
            assert torch.allclose(out[m], train_step(n, x[m:m + 1])[0], atol=1e-5)
            assert torch.equal(batch.fc["out"].gain[m], n.fc["out"].gain[0])
            assert torch.equal(batch.gain_control.entropy[m], n.gain_control.entropy[0])


@pytest.mark.parametrize("kind", ["sgd", "msgd", "adam"])
def test_optimizers_match_torch(kind):
    torch.manual_seed(0)
    ours_p = [torch.randn(2, 5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    ref_p = [ours_p[0][1].detach().clone().requires_grad_(True), ours_p[1].detach().clone().requires_grad_(True)]
    method = resolve_method(kind)
    # a stacked parameter updated on one model's slice, and a parameter of one model alone
    ours = MethodOptimizer(method, [(ours_p[0], slice(1, 2), True), (ours_p[1], None, False)])
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
