"""The training loop and checkpoints: learning, determinism, exact resume, clear errors."""
import dataclasses

import pytest
import torch
from torch import nn

from course_lib.checkpoints import check_compatible, load_checkpoint, load_into, save_checkpoint
from course_lib.diffusion import Diffusion
from course_lib.nets import UNet, UNetConfig, unet_config
from course_lib.train import TrainConfig, ema_update, lr_at, step_cost, train, train_or_load

DIFFUSION = Diffusion(1000)
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(dropout: float = 0.0, base: int = 8) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(1, 8, base, (1, 2), 1, (4,), dropout, 2, 4))


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 8, 8, generator=g) > 0.5).float() * 2 - 1


def config(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, lr=2e-3, warmup=3, ema_decay=0.9, log_every=2)
    return TrainConfig(**{**base, **kw})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----- the small pieces, by hand ----------------------------------------------------------------------
def test_lr_warmup_by_hand():
    cfg = config(lr=1.0, warmup=4)
    assert [lr_at(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_at(0, config(lr=0.1, warmup=0)) == 0.1


def test_ema_update_by_hand():
    ema, model = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    nn.init.constant_(ema.weight, 1.0)
    nn.init.constant_(model.weight, 3.0)
    ema_update(ema, model, decay=0.9)                  # 0.9 * 1 + 0.1 * 3
    assert ema.weight.item() == pytest.approx(1.2)


def test_train_config_refuses_bad_values():
    with pytest.raises(ValueError, match=r"steps=0 must be >= 1.*ema_decay=1.0 must be in \[0, 1\)"):
        TrainConfig(steps=0, ema_decay=1.0)


# ----- learning -----------------------------------------------------------------------------------------
def test_overfitting_one_batch_drives_the_loss_down():
    x = images(8)
    result = train(tiny(), DIFFUSION, x, config(steps=80, batch_size=8, lr=5e-3, warmup=5),
                   device=CPU, progress=False)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-20:]) / 20
    assert len(result.losses) == 80 and result.steps == 80
    assert 0.7 < first < 1.3          # eps_theta = 0 at init, so the loss starts at E[eps^2] = 1
    assert last < 0.5 * first
    assert not same_weights(result.ema, tiny())


def test_same_seed_same_run_other_seed_other_run():
    a = train(tiny(), DIFFUSION, images(), config(), device=CPU, progress=False)
    b = train(tiny(), DIFFUSION, images(), config(), device=CPU, progress=False)
    c = train(tiny(), DIFFUSION, images(), config(seed=1), device=CPU, progress=False)
    assert a.losses == b.losses and same_weights(a.ema, b.ema)
    assert a.losses != c.losses


def test_training_leaves_the_global_rng_alone():
    model = tiny(dropout=0.1)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(model, DIFFUSION, images(), config(steps=2), device=CPU, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_nan_loss_stops_with_the_step():
    class NaNAtThirdCall(nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.calls = nn.Parameter(torch.ones(())), 0

        def forward(self, x, t):
            self.calls += 1
            return x * self.w * (float("nan") if self.calls == 3 else 1.0)

    with pytest.raises(FloatingPointError, match="loss is nan at step 3"):
        train(NaNAtThirdCall(), DIFFUSION, images(), config(), device=CPU, progress=False)


# ----- checkpoints --------------------------------------------------------------------------------------
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    path = tmp_path / "m.pt"
    model = tiny()
    result = train(model, DIFFUSION, images(), config(checkpoint_path=str(path)), device=CPU, progress=False)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999])
    fresh_model, fresh_ema = tiny(base=8), tiny(base=8)
    load_into(fresh_model, path, "model")
    ckpt = load_into(fresh_ema, path, "ema")
    with torch.no_grad():
        assert torch.equal(fresh_model.eval()(x, t), model.eval()(x, t))
        assert torch.equal(fresh_ema.eval()(x, t), result.ema(x, t))
    assert ckpt["step"] == 6 and ckpt["model_config"]["base_channels"] == 8
    assert ckpt["train_config"]["lr"] == 2e-3 and len(ckpt["losses"]) == 6


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, dropout):
    steps = 9                                               # warmup (3) ends before the stop at step 4
    whole = tiny(dropout)
    full = train(whole, DIFFUSION, images(), config(steps=steps), device=CPU, progress=False)
    path = tmp_path / "part.pt"
    train(tiny(dropout), DIFFUSION, images(), config(steps=4, checkpoint_path=str(path)), device=CPU,
          progress=False)                                   # "interrupted" after step 4
    resumed_model = tiny(dropout)
    resumed = train(resumed_model, DIFFUSION, images(), config(steps=steps), device=CPU, progress=False,
                    resume=path)
    assert same_weights(resumed_model, whole) and same_weights(resumed.ema, full.ema)
    assert resumed.losses == full.losses and resumed.steps == steps


def test_resume_with_another_learning_rate_is_refused(tmp_path):
    path = tmp_path / "part.pt"
    train(tiny(), DIFFUSION, images(), config(steps=2, checkpoint_path=str(path)), device=CPU, progress=False)
    with pytest.raises(ValueError, match="lr: checkpoint 0.002, now 0.001"):
        train(tiny(), DIFFUSION, images(), config(lr=1e-3), device=CPU, progress=False, resume=path)


def test_corrupt_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "broken.pt"
    train(tiny(), DIFFUSION, images(), config(steps=1, checkpoint_path=str(path)), device=CPU, progress=False)
    path.write_bytes(path.read_bytes()[:300])             # truncated, as after a crash mid-copy
    with pytest.raises(ValueError, match=r"Could not read the checkpoint .*broken\.pt.*corrupt"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def _flip_a_weight_byte(path) -> None:
    """Damage the checkpoint as a bad disk would: one byte inside its largest tensor, the file still a zip."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename and i.filename.split("/")[-1].isdigit()),
                   key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    off = info.header_offset                                # local header: 30 bytes, the name, the extra field
    start = off + 30 + int.from_bytes(raw[off + 26:off + 28], "little") + int.from_bytes(raw[off + 28:off + 30], "little")
    raw[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def test_damaged_checkpoint_is_detected_and_retrained(tmp_path):
    kw = dict(directory=tmp_path, device=CPU, progress=False)
    _, ema, _ = train_or_load("run", tiny, DIFFUSION, images(), config(), **kw)
    path = tmp_path / "run.pt"
    _flip_a_weight_byte(path)
    with pytest.raises(ValueError, match=r"run\.pt is damaged: its weights do not match the digest"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="damaged.*Training 'run' again"):
        _, ema2, info = train_or_load("run", tiny, DIFFUSION, images(), config(), **kw)
    assert not info["loaded"] and same_weights(ema2, ema)      # retrained, to the same weights
    load_checkpoint(path)                                     # and saved whole again


def test_wrong_architecture_names_the_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "b8.pt", tiny(base=8), None, None, 0)
    with pytest.raises(ValueError, match="checkpoint has base_channels=8, model has 16"):
        check_compatible(load_checkpoint(path), tiny(base=16), path)
    other = UNet(unet_config("unet-tiny", in_channels=1, image_size=16))
    with pytest.raises(ValueError, match=r"attention_resolutions=\(4,\), model has \(\);.*channel_mult=\(1, 2\), "
                                         r"model has \(1, 2, 2\);.*image_size=8, model has 16"):
        load_into(other, path)
    with pytest.raises(ValueError, match="holds a UNet, but the model is a Linear"):
        load_into(nn.Linear(2, 2), path)


def test_train_or_load_trains_then_loads_then_retrains_on_other_data(tmp_path):
    kw = dict(directory=tmp_path, device=CPU, progress=False)
    model, ema, info = train_or_load("digits", tiny, DIFFUSION, images(), config(), **kw)
    assert not info["loaded"] and (tmp_path / "digits.pt").exists() and len(info["losses"]) == 6
    model2, ema2, info2 = train_or_load("digits", tiny, DIFFUSION, images(), config(log_every=3), **kw)
    assert info2["loaded"] and same_weights(ema2, ema) and same_weights(model2, model)
    assert info2["losses"] == info["losses"] and not ema2.training
    _, ema3, info3 = train_or_load("digits", tiny, DIFFUSION, images(seed=1), config(), **kw)
    assert not info3["loaded"] and "other images" in info3["reason"] and not same_weights(ema3, ema)
    _, _, info4 = train_or_load("digits", tiny, DIFFUSION, images(seed=1), config(steps=7), **kw)
    assert not info4["loaded"] and "steps: checkpoint 6, now 7" in info4["reason"]


def test_train_or_load_resumes_an_interrupted_run(tmp_path):
    cfg = config(steps=8, checkpoint_every=4)
    full = train(tiny(), DIFFUSION, images(), cfg, device=CPU, progress=False)
    path = tmp_path / "run.pt"
    train(tiny(), DIFFUSION, images(), dataclasses.replace(cfg, steps=4, checkpoint_path=str(path)),
          device=CPU, progress=False)
    torch.save({**torch.load(path, weights_only=True),
                "train_config": {**torch.load(path, weights_only=True)["train_config"], "steps": 8}}, path)
    _, ema, info = train_or_load("run", tiny, DIFFUSION, images(), cfg, directory=tmp_path, device=CPU,
                                 progress=False)
    assert "resuming an interrupted run at step 4" in info["reason"] and same_weights(ema, full.ema)


def test_step_cost_reports_positive_numbers():
    model = tiny()
    cost = step_cost(model, DIFFUSION, images(), 4, steps=1, device=CPU)
    params = sum(p.numel() * 4 for p in model.parameters())
    assert cost.seconds_per_step > 0 and cost.peak_bytes > 4 * params and "estimate" in cost.method


# ----- what the training loop must keep: the EMA warmup and gradient clipping ---------------------------
def test_ema_follows_the_warmed_up_decay_step_by_step():
    """The EMA after n steps, replayed by hand from the weights of 0, 1 and 2-step runs (the runs share
    their batches, so the k-step run's weights are the longer run's weights after step k): with the
    warmup min(decay, (1 + n) / (10 + n)) the first update keeps 0.1 of the start, not 0.999."""
    w = [tiny().state_dict()] + [train(m := tiny(), DIFFUSION, images(), config(steps=k, ema_decay=0.999),
                                       device=CPU, progress=False) and m.state_dict() for k in (1, 2)]
    ema = train(tiny(), DIFFUSION, images(), config(steps=2, ema_decay=0.999), device=CPU, progress=False).ema
    d0, d1 = min(0.999, 1 / 10), min(0.999, 2 / 11)
    for k, value in ema.state_dict().items():
        if not value.is_floating_point():
            continue
        expected = d1 * (d0 * w[0][k] + (1 - d0) * w[1][k]) + (1 - d1) * w[2][k]
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def test_gradient_clipping_bounds_the_first_step():
    """AdamW's first step is lr * g / (|g| + 1e-8) per weight: about lr where the gradient is not tiny.
    With the gradient's global norm clipped to 1e-9 every |g| is far below 1e-8, so no weight moves by
    more than a tenth of lr; without clipping the weights that get a gradient at all move by about lr
    (at initialization only the zero-initialized output layer does)."""
    start = tiny().state_dict()
    moved = {}
    for clip in (1e-9, None):
        model = tiny()
        train(model, DIFFUSION, images(), config(steps=1, warmup=0, lr=1e-2, grad_clip=clip), device=CPU,
              progress=False)
        moved[clip] = torch.cat([(model.state_dict()[k] - start[k]).abs().flatten()
                                 for k in start if start[k].is_floating_point()])
    assert moved[1e-9].max() < 0.1 * 1e-2
    assert moved[None].max() > 0.9 * 1e-2
