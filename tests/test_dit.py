"""The Diffusion Transformer: presets, patchify, position embedding, attention, adaLN-Zero, checkpoints."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checkpoints import load_into, save_checkpoint
from course_lib.nets.dit import (CONDITIONINGS, PRESETS, DiT, DiTConfig, dit_config, patchify,
                                 sincos_2d_position_embedding, unpatchify)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(conditioning="adaln-zero", channels=1, image_size=8, patch_size=2, depth=2) -> DiTConfig:
    return DiTConfig(channels, image_size, patch_size=patch_size, hidden_size=32, depth=depth, num_heads=2,
                     conditioning=conditioning)


def randomized(model: DiT, std: float = 0.1) -> DiT:
    """Give the zero-initialised layers random weights, so that every part of the model is exercised."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=std)
    return model


def train_steps(model: DiT, steps: int, lr: float = 1e-3, seed: int = 0):
    """AdamW on MSE to random targets; yields the model after each step with its gradients still set."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        x = torch.randn(4, cfg.in_channels, cfg.image_size, cfg.image_size, generator=gen)
        t = torch.randint(0, 1000, (4,), generator=gen)
        opt.zero_grad(set_to_none=False)
        F.mse_loss(model(x, t), torch.randn(x.shape, generator=gen)).backward()
        opt.step()
        yield model


# ----- presets and config -----------------------------------------------------------------------------
def test_base_presets_have_the_paper_sizes():
    widths = {"ti": (192, 3), "s": (384, 6), "b": (768, 12)}
    assert len(PRESETS) == 9
    for size, (hidden, heads) in widths.items():
        for p in (2, 4, 8):
            cfg = dit_config(f"dit-{size}{p}", in_channels=3, image_size=32)
            assert (cfg.hidden_size, cfg.num_heads, cfg.patch_size, cfg.depth) == (hidden, heads, p, 12)
            assert cfg.conditioning == "adaln-zero" and cfg.mlp_ratio == 4.0
            assert cfg.num_patches == (32 // p) ** 2
    assert dit_config("dit-ti4-d6", in_channels=1, image_size=32).depth == 6
    assert dit_config("dit-b8-d1", in_channels=1, image_size=32).depth == 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_and_keeps_the_shape(preset, channels):
    name = preset if preset.startswith("dit-ti") else preset + "-d1"   # S and B at depth 1: fast to build
    p = int(preset[-1])
    model = DiT(dit_config(name, in_channels=channels, image_size=2 * p))
    x = torch.randn(2, channels, 2 * p, 2 * p)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert not out.any()


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_fresh_model_outputs_exactly_zero(conditioning):
    torch.manual_seed(0)
    model = DiT(tiny(conditioning, channels=3))
    out = model(torch.randn(3, 3, 8, 8), torch.tensor([0, 10, 999]))
    assert out.shape == (3, 3, 8, 8) and not out.any()


def test_conditioning_variants_differ_as_documented():
    zero, plain, context = (DiT(tiny(c)) for c in ("adaln-zero", "adaln", "in-context"))
    assert zero.blocks[0].adaLN_modulation[-1].out_features == 6 * 32
    assert not any(p.any() for p in zero.blocks[0].adaLN_modulation.parameters())
    assert plain.blocks[0].adaLN_modulation[-1].out_features == 4 * 32
    assert plain.blocks[0].adaLN_modulation[-1].weight.abs().sum() > 0       # not zero-initialised
    assert not hasattr(context.blocks[0], "adaLN_modulation")
    assert context.blocks[0].norm1.elementwise_affine and not zero.blocks[0].norm1.elementwise_affine
    tokens, _ = context.embed(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))
    assert tokens.shape == (2, 16 + 1, 32)                                     # N patches + the t token


def test_adaln_zero_blocks_start_as_the_identity():
    model = DiT(tiny("adaln-zero"))
    h, c = model.embed(torch.randn(2, 1, 8, 8), torch.tensor([3, 700]))
    for block in model.blocks:
        assert torch.equal(block(h, c), h)


def test_scalar_t_is_broadcast():
    model = randomized(DiT(tiny()))
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model(x, 5), model(x, torch.tensor([5, 5])))


# ----- patches and positions ----------------------------------------------------------------------------
@pytest.mark.parametrize("channels,size,p", [(1, 8, 2), (3, 12, 4), (3, 16, 8), (2, 6, 1)])
def test_patchify_matches_a_loop_and_unpatchify_inverts_it(channels, size, p):
    x = torch.randn(2, channels, size, size)
    tokens = patchify(x, p)
    g = size // p
    xs = x.numpy()
    expected = np.stack([xs[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p].transpose(0, 2, 3, 1).reshape(2, -1)
                         for r in range(g) for c in range(g)], axis=1)      # row-major, (p, p, C) each
    assert tokens.shape == (2, g * g, p * p * channels)
    np.testing.assert_array_equal(tokens.numpy(), expected)
    assert torch.equal(unpatchify(tokens, p, channels, size), x)


def test_conv_patch_embedding_is_a_linear_map_of_patchify():
    model = DiT(tiny(channels=3, image_size=12, patch_size=4))
    x = torch.randn(2, 3, 12, 12)
    conv = model.patch_embed
    by_conv = conv(x).flatten(2).transpose(1, 2)                                  # (B, N, D)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)      # (D, p*p*C), (p, p, C) order
    torch.testing.assert_close(by_conv, F.linear(patchify(x, 4), weight, conv.bias), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dim,grid", [(8, 3), (32, 4), (192, 8)])
def test_position_embedding_matches_numpy(dim, grid):
    q = dim // 4
    expected = np.zeros((grid * grid, dim))
    for row in range(grid):
        for col in range(grid):
            for i in range(q):
                w = 10000.0 ** (-2.0 * i / (dim / 2))
                expected[row * grid + col, [i, q + i, 2 * q + i, 3 * q + i]] = [
                    math.sin(col * w), math.cos(col * w), math.sin(row * w), math.cos(row * w)]
    emb = sincos_2d_position_embedding(dim, grid)
    assert emb.shape == (grid * grid, dim) and emb.dtype == torch.float32
    np.testing.assert_allclose(emb.numpy(), expected, atol=1e-6, rtol=0)
    dist = torch.cdist(emb.double(), emb.double()) + torch.eye(grid * grid, dtype=torch.float64) * 1e9
    assert dist.min() > 1e-2                                                     # every position is told apart
    model = DiT(tiny(image_size=8, patch_size=2))
    assert torch.equal(model.pos_embed[0], sincos_2d_position_embedding(32, 4))
    assert "pos_embed" not in dict(model.named_parameters())


# ----- attention ----------------------------------------------------------------------------------------
def explicit_attention(attn, h):
    """softmax(q k^T / sqrt(d)) v per head and the output projection, in float64, from the raw weights."""
    h = h.double()
    B, N, D = h.shape
    heads, d = attn.num_heads, D // attn.num_heads
    q, k, v = F.linear(h, attn.qkv.weight.double(), attn.qkv.bias.double()).split(D, dim=-1)
    split = lambda a: a.reshape(B, N, heads, d).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    weights = torch.exp(q @ k.transpose(-1, -2) / math.sqrt(d))
    weights = weights / weights.sum(-1, keepdim=True)
    out = (weights @ v).transpose(1, 2).reshape(B, N, D)
    return weights, F.linear(out, attn.proj.weight.double(), attn.proj.bias.double())


def test_attention_and_attention_maps_match_an_explicit_computation():
    model = randomized(DiT(tiny("adaln-zero", channels=3, depth=2)))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([4, 800])
    maps = model.attention_maps(x, t)
    assert maps.shape == (2, 2, 2, 16, 16)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 2, 16), atol=1e-5, rtol=0)
    with torch.no_grad():
        tokens = F.conv2d(x, model.patch_embed.weight, model.patch_embed.bias, stride=2)
        tokens = tokens.flatten(2).transpose(1, 2) + sincos_2d_position_embedding(32, 4)
        c = model.t_embedder(t)
        for layer, block in enumerate(model.blocks):
            shift, scale = block.adaLN_modulation(c)[:, :64].chunk(2, dim=1)
            h = F.layer_norm(tokens, (32,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
            weights, out = explicit_attention(block.attn, h)
            torch.testing.assert_close(maps[layer].double(), weights, atol=1e-5, rtol=0)
            torch.testing.assert_close(block.attn(h).double(), out, atol=1e-5, rtol=0)   # the SDPA path
            tokens = block(tokens, c)


def test_in_context_attention_maps_drop_the_time_token():
    model = randomized(DiT(tiny("in-context", depth=3)))
    maps = model.attention_maps(torch.randn(2, 1, 8, 8), torch.tensor([1, 500]))
    assert maps.shape == (3, 2, 2, 16, 16)
    sums = maps.sum(-1)
    assert (sums < 1).all() and (sums > 0).all()        # the rest of each row went to the t token


# ----- adaLN-Zero training dynamics --------------------------------------------------------------------
def test_adaln_zero_gradients_start_at_the_output_and_reach_everything():
    torch.manual_seed(0)
    model = DiT(tiny("adaln-zero", depth=2))
    names = [name for name, _ in model.named_parameters()]
    ever = dict.fromkeys(names, False)
    for step, _ in enumerate(train_steps(model, 4)):
        got = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.any()}
        if step == 0:   # only the zero-initialised final linear learns first: everything else is behind it
            assert got == {"final_layer.linear.weight", "final_layer.linear.bias"}
        if step == 1:   # the gates got their first gradient, but were still 0: attention and MLP learn nothing
            assert not any(".attn." in name or ".mlp." in name for name in got if name.startswith("blocks."))
            assert {"blocks.0.adaLN_modulation.1.weight", "patch_embed.weight"} <= got
        for name in got:
            ever[name] = True
    assert all(ever.values()), f"never got a gradient: {[n for n, v in ever.items() if not v]}"


# ----- checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("conditioning", ["adaln-zero", "in-context"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, conditioning):
    torch.manual_seed(0)
    cfg = tiny(conditioning, channels=3)
    model = DiT(cfg)
    for _ in train_steps(model, 3):
        pass
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([7, 300])
    out = model(x, t)
    assert out.any()
    save_checkpoint(tmp_path / "dit.pt", model, ema=None, optimizer=None, step=3)
    torch.manual_seed(123)
    restored = DiT(cfg)
    assert not torch.equal(restored(x, t), out)
    load_into(restored, tmp_path / "dit.pt", which="model")
    assert torch.equal(restored(x, t), out)


# ----- bad input ----------------------------------------------------------------------------------------
def test_image_side_not_divisible_by_the_patch():
    with pytest.raises(ValueError, match=r"image_size=30 is not divisible by patch_size=4.*28 or 32"):
        dit_config("dit-ti4", in_channels=1, image_size=30)
    with pytest.raises(ValueError, match=r"image_size=10 is not divisible by patch_size=8"):
        DiTConfig(1, 10, patch_size=8, hidden_size=32, depth=1, num_heads=2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(hidden_size=30, num_heads=4), "num_heads=4 must divide hidden_size=30"),
    (dict(hidden_size=18, num_heads=3), "hidden_size=18 must be divisible by 4"),
    (dict(depth=0), "depth must be a positive int"),
    (dict(in_channels=0), "in_channels must be a positive int"),
    (dict(mlp_ratio=0.0), "mlp_ratio must be > 0"),
    (dict(conditioning="film"), r"unknown conditioning 'film'; valid: 'adaln-zero', 'adaln', 'in-context'"),
])
def test_config_rejects_bad_fields(kwargs, match):
    fields = dict(in_channels=1, image_size=8, patch_size=2, hidden_size=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=match):
        DiTConfig(**{**fields, **kwargs})


@pytest.mark.parametrize("preset", ["dit-xl2", "dit-s3", "DiT-S/2", "unet-small", "dit-s4-6"])
def test_unknown_preset_lists_the_valid_names(preset):
    with pytest.raises(ValueError, match=r"Unknown DiT preset.*dit-ti2, dit-ti4.*dit-b8.*'-d<N>', 1 <= N <= 12"):
        dit_config(preset, in_channels=1, image_size=32)


@pytest.mark.parametrize("preset", ["dit-ti4-d0", "dit-s2-d13"])
def test_bad_depth_suffix(preset):
    with pytest.raises(ValueError, match=r"needs 1 <= N <= 12, got N=(0|13)"):
        dit_config(preset, in_channels=1, image_size=32)


def test_forward_rejects_wrong_channels_side_and_t():
    model = DiT(tiny(channels=3))
    with pytest.raises(ValueError, match=r"in_channels=3, image_size=8.*\(2, 1, 8, 8\).*dit_config"):
        model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"in_channels=3, image_size=8.*\(2, 3, 16, 16\)"):
        model(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2, 3]))
