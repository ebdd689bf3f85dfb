"""The library of notebook 12: course.editing, course.control, course.lora, course.personalize, course.in_context.

Each test checks a property the notebook relies on, on small seeded models."""
from __future__ import annotations

import torch
from torch import nn

from course import control, editing, in_context, lora, personalize
from course.ddim import ddim_invert, ddim_sample, ddim_timesteps
from course.nets import TimeMLP
from course.schedules import make_schedule
from course.unet import UNet

T = 100
ALPHA_BAR = make_schedule(T, "linear")[1]


def eps_model(seed=0, n_classes=4):
    torch.manual_seed(seed)
    net = TimeMLP(dim=16, hidden=32, depth=2, emb_dim=16, n_classes=n_classes).eval()

    def model(x, t, y=None):
        with torch.no_grad():
            return net(x.reshape(x.shape[0], -1), t, y).reshape(x.shape)

    return model


def test_sdedit_at_zero_returns_the_guide_and_at_one_is_the_sampler():
    """Is SDEdit at t0 = 0 the identity, and at t0 = 1 DDIM from the noised guide?"""
    model, ts = eps_model(), ddim_timesteps(T, 10)
    x, noise = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    args = dict(alpha_bar=ALPHA_BAR, timesteps=ts, noise=noise)
    assert torch.equal(editing.sdedit(model, x, 0.0, args), x)
    x_T = ALPHA_BAR[-1].sqrt() * x + (1 - ALPHA_BAR[-1]).sqrt() * noise
    torch.testing.assert_close(editing.sdedit(model, x, 1.0, args), ddim_sample(model, x_T, ts, ALPHA_BAR))
    assert editing.sdedit_path(0.5, ts, T)[0] == 49 and editing.sdedit_path(0.5, ts, T)[-1] == -1


def test_invert_then_edit_without_guidance_is_ddim_inversion_then_sampling():
    """Does invert_then_edit with w = 0 and one label equal ddim_invert followed by ddim_sample?"""
    model, ts = eps_model(1), ddim_timesteps(T, 12)
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    cond = lambda z, t: model(z, t, y)  # noqa: E731
    expected = ddim_sample(cond, ddim_invert(cond, x, ts, ALPHA_BAR), ts, ALPHA_BAR)
    torch.testing.assert_close(editing.invert_then_edit(model, x, y, y, 0.0, 0.0, ts, ALPHA_BAR), expected)


def test_fixed_point_inversion_reconstructs_better_under_strong_guidance():
    """Under strong guidance, do fixed-point inversion steps reconstruct the input better than plain ones?"""
    model, ts = eps_model(2), ddim_timesteps(T, 20)
    x, y = torch.randn(6, 1, 4, 4), torch.randint(0, 4, (6,))
    plain = editing.invert_then_edit(model, x, y, y, 4.0, 4.0, ts, ALPHA_BAR)
    fixed = editing.invert_then_edit_fixed_point(model, x, y, y, 4.0, 4.0, ts, ALPHA_BAR, iterations=5)
    assert ((fixed - x) ** 2).mean() < ((plain - x) ** 2).mean()


def test_zero_conv_starts_at_zero_and_learns():
    """Is a new ZeroConv silent, yet its weight's gradient not zero?"""
    zc = control.ZeroConv(3, 5)
    x = torch.randn(2, 3, 4, 4)
    out = zc(x)
    assert torch.equal(out, torch.zeros(2, 5, 4, 4))
    out.sum().backward()
    assert zc.conv.weight.grad.abs().sum() > 0


def test_control_adapter_starts_as_the_base_and_keeps_it_frozen():
    """Does an untrained ControlAdapter reproduce its frozen base exactly, with only the copy trainable?"""
    torch.manual_seed(0)
    base = UNet(2, 8, (1, 2), 16, n_classes=4)
    x, t, y = torch.randn(3, 2, 8, 8), torch.randint(0, 1000, (3,)), torch.randint(0, 4, (3,))
    with torch.no_grad():
        before = base(x, t, y)
    adapter = control.ControlAdapter(base, cond_ch=3)
    with torch.no_grad():
        torch.testing.assert_close(adapter(x, t, torch.randn(3, 3, 8, 8), y), before, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in base.parameters())
    trainable = sum(p.numel() for p in adapter.parameters() if p.requires_grad)
    encoder = sum(p.numel() for m in [base.stem, base.down_blocks, base.downsamples, base.mid1] for p in m.parameters())
    assert trainable > encoder


def test_outline_overlap_is_one_for_the_image_itself():
    """Is an image's outline overlap with its own outline 1, and 0 with an empty outline's complement?"""
    x = -torch.ones(2, 1, 8, 8)
    x[:, :, 2:6, 3:5] = 1.0
    outline = control.outline_map(x)
    torch.testing.assert_close(control.outline_overlap(x, outline), torch.ones(2))
    assert float(control.outline_overlap(x, 1 - outline).max()) == 0.0


def test_lora_fresh_is_the_base_and_merge_adds_the_update():
    """Does a fresh LoRALinear equal its base, and does merge() give W + (alpha / r) B A?"""
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    layer = lora.LoRALinear(base, rank=2, alpha=8.0)
    x = torch.randn(5, 6)
    torch.testing.assert_close(layer(x), base(x))
    with torch.no_grad():
        layer.B.copy_(torch.randn(4, 2))
    merged = layer.merge()
    torch.testing.assert_close(merged.weight, base.weight + 4.0 * layer.B @ layer.A)
    torch.testing.assert_close(merged(x), layer(x))
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == 2 * (6 + 4)


def test_inject_and_merge_lora_on_a_unet():
    """Does inject_lora wrap exactly the named layers, freeze the rest, and merge_lora undo the wrapping?"""
    torch.manual_seed(0)
    net = UNet(1, 8, (1, 2), 16, n_classes=4)
    x, t, y = torch.randn(2, 1, 8, 8), torch.randint(0, 1000, (2,)), torch.randint(0, 4, (2,))
    with torch.no_grad():
        before = net(x, t, y)
    lora.inject_lora(net, 2, 2.0, ["emb_proj"])
    wrapped = [n for n, m in net.named_modules() if isinstance(m, lora.LoRALinear)]
    assert len(wrapped) == 6 and all(n.endswith("emb_proj") for n in wrapped)
    assert {id(p) for p in net.parameters() if p.requires_grad} == {id(p) for p in lora.lora_parameters(net)}
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, y), before)
        for p in lora.lora_parameters(net):
            p.add_(0.1 * torch.randn_like(p))
        adapted = net(x, t, y)
        lora.merge_lora(net)
        assert not any(isinstance(m, lora.LoRALinear) for m in net.modules())
        torch.testing.assert_close(net(x, t, y), adapted, rtol=1e-4, atol=1e-5)


def test_dreambooth_prior_term():
    """Does the prior term vanish at weight zero, and add linearly in its weight?"""
    torch.manual_seed(0)
    net = TimeMLP(dim=16, hidden=16, depth=2, emb_dim=8, time_scale=1000.0, n_classes=3)
    model = lambda x, t, c: net(x.flatten(1), t, c).reshape(x.shape)  # noqa: E731
    xi, xp = torch.randn(2, 1, 4, 4), torch.randn(3, 1, 4, 4)
    ci, cp = torch.full((2,), 2), torch.randint(0, 2, (3,))
    noise, t = torch.randn(5, 1, 4, 4), torch.rand(5)
    with torch.no_grad():
        l0 = personalize.dreambooth_loss(model, xi, ci, xp, cp, 0.0, noise, t)
        l1 = personalize.dreambooth_loss(model, xi, ci, xp, cp, 1.0, noise, t)
        l2 = personalize.dreambooth_loss(model, xi, ci, xp, cp, 2.0, noise, t)
        tt = t[:2, None, None, None]
        inst = ((model((1 - tt) * noise[:2] + tt * xi, t[:2], ci) - (xi - noise[:2])) ** 2).mean()
    torch.testing.assert_close(l0, inst)
    torch.testing.assert_close(l2 - l1, l1 - l0)


def test_barred_style_is_measurable():
    """Do real digits score as unbarred and the barred instance images as barred?"""
    from course.digits import load_digits

    x, _ = load_digits(split="test")
    assert float(personalize.has_bars(x).float().mean()) < 0.01
    assert bool(personalize.has_bars(personalize.barred_digits(3, 5, size=16)).all())
    assert float(personalize.has_bars(personalize.remove_bars(personalize.barred_digits(3, 5))).float().mean()) == 0.0


def test_add_label_row_copies_the_initialising_row():
    """Does the new identifier start as the row it is initialised from, with the others unchanged?"""
    emb = nn.Embedding(11, 4)
    new = personalize.add_label_row(emb, init_from=3)
    assert new.num_embeddings == 12
    torch.testing.assert_close(new.weight[:11], emb.weight)
    torch.testing.assert_close(new.weight[11], emb.weight[3])


def test_in_context_tokens_order_and_positions():
    """Are the target tokens first, and do the context positions restart with frame 1?"""
    a, b = torch.randn(2, 3, 4), torch.randn(2, 2, 4)
    tokens, positions = in_context.in_context_tokens(a, b)
    torch.testing.assert_close(tokens, torch.cat([a, b], 1))
    assert positions.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]
