"""Schedules, the forward process, the posterior and p(x_{t-1}|x_t), each against an independent reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.diffusion import Diffusion, extract, make_betas
from course_lib.course.toy import GaussianOracle


# ----- schedules ------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("T", [2, 10, 1000])
def test_schedule_is_a_valid_decreasing_signal_level(schedule, T):
    d = Diffusion(T, schedule)
    abar = d.alphas_cumprod
    assert abar.dtype == torch.float32 and abar.shape == (T,)
    assert ((abar > 0) & (abar < 1)).all()
    assert (abar[1:] < abar[:-1]).all(), "alphas_cumprod must be strictly decreasing"
    assert ((d.betas > 0) & (d.betas < 1)).all()
    assert (d.snr[1:] < d.snr[:-1]).all(), "SNR must be strictly decreasing"
    # independent: cumulative product of (1 - beta) in numpy float64
    np.testing.assert_allclose(abar.numpy(), np.cumprod(1 - make_betas(schedule, T).numpy()), rtol=1e-5)


def test_linear_schedule_has_the_papers_endpoints():
    b = Diffusion(1000, "linear").betas
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    assert Diffusion(1000, "linear").alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=0.02)


def test_cosine_alphas_cumprod_matches_its_defining_formula():
    T, s = 1000, 0.008
    d = Diffusion(T, "cosine")
    t = np.arange(1, T + 1)
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    expected = f(t) / f(0)
    # beta is clipped at 0.999 near t = T, where the formula reaches 0; compare before the clip acts
    unclipped = 1 - expected[1:] / expected[:-1] < 0.999
    n = int(np.argmin(unclipped)) if not unclipped.all() else T - 1
    np.testing.assert_allclose(d.alphas_cumprod[:n].numpy(), expected[:n], rtol=1e-5, atol=1e-7)
    snr = expected / (1 - expected)
    np.testing.assert_allclose(d.snr[:200].numpy(), snr[:200], rtol=1e-4)


def test_snr_is_abar_over_one_minus_abar():
    d = Diffusion(100, "linear")
    b = np.linspace(1e-3, 0.2, 100)
    abar = np.cumprod(1 - b)
    np.testing.assert_allclose(d.snr.numpy(), abar / (1 - abar), rtol=1e-4)


# ----- forward process ----------------------------------------------------------------------
def test_closed_form_matches_iterated_markov_chain():
    """T iterated one-step Markov kernels vs closed-form q(x_t | x_0), by Monte Carlo moments."""
    T, N = 100, 40_000
    d = Diffusion(T, "linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((N,), 0.7, dtype=torch.float64)
    x = x0
    checks = {0, 9, 49, 99}
    for t in range(T):
        x = d.q_step(x, t, torch.randn(N, generator=g, dtype=torch.float64))
        if t in checks:
            closed = d.q_sample(x0, t, torch.randn(N, generator=g, dtype=torch.float64))
            abar = float(np.prod(1 - np.linspace(1e-3, 0.2, T)[: t + 1]))  # independent abar
            for sample in (x, closed):
                m, v = sample.mean().item(), sample.var().item()
                se_m, se_v = math.sqrt((1 - abar) / N), (1 - abar) * math.sqrt(2 / N)
                assert abs(m - math.sqrt(abar) * 0.7) < 5 * se_m, (t, m)
                assert abs(v - (1 - abar)) < 5 * se_v, (t, v)


def test_q_mean_variance_matches_q_sample_statistics():
    d = Diffusion(50, "cosine")
    x0 = torch.tensor([[-1.0, 0.5]]).expand(40_000, 2).double()
    t = torch.full((40_000,), 20)
    mean, var, log_var = d.q_mean_variance(x0, t)
    xs = d.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    torch.testing.assert_close(xs.mean(0), mean[0], atol=0.03, rtol=0)
    torch.testing.assert_close(xs.var(0), var[0].expand(2), atol=0.03, rtol=0)
    torch.testing.assert_close(log_var.exp(), var)


# ----- posterior q(x_{t-1} | x_t, x_0) -------------------------------------------------------------
def test_posterior_matches_gaussian_conditioning_in_float64():
    """Conditioning the joint Gaussian (x_{t-1}, x_t) | x_0 (regression formula), done in float64."""
    T = 200
    d = Diffusion(T, "cosine")
    b = make_betas("cosine", T).numpy()
    abar = np.cumprod(1 - b)
    x0 = torch.tensor([0.3, -0.8], dtype=torch.float64)
    x_t = torch.tensor([1.1, 0.2], dtype=torch.float64)
    for t in range(1, T):
        s11 = 1 - abar[t - 1]                        # Var(x_{t-1} | x_0)
        s12 = math.sqrt(1 - b[t]) * s11              # Cov(x_{t-1}, x_t | x_0)
        s22 = 1 - abar[t]                            # Var(x_t | x_0)
        mu1, mu2 = math.sqrt(abar[t - 1]) * x0.numpy(), math.sqrt(abar[t]) * x0.numpy()
        mean_ref = mu1 + s12 / s22 * (x_t.numpy() - mu2)
        var_ref = s11 - s12 ** 2 / s22
        mean, var, log_var = d.q_posterior_mean_variance(x0, x_t, torch.full((2,), t))
        np.testing.assert_allclose(mean.numpy(), mean_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var.numpy()[0], var_ref, rtol=1e-4)
        np.testing.assert_allclose(log_var.numpy()[0], math.log(var_ref), atol=1e-4)
    # at t = 0 the "posterior" is x_0 itself; the log-variance is clipped to a finite value
    mean, var, log_var = d.q_posterior_mean_variance(x0, x_t, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(mean, x0)
    assert var.abs().max() < 1e-12 and torch.isfinite(log_var).all()
    # ... to the log of the t = 1 posterior variance, as in Ho et al.'s and improved-diffusion's code
    tilde_beta_1 = b[1] * (1 - abar[0]) / (1 - abar[1])   # float64, code t = 1
    np.testing.assert_allclose(log_var.numpy().ravel(), math.log(tilde_beta_1), rtol=1e-5)


def test_posterior_matches_monte_carlo_conditioning():
    """Regress simulated x_{t-1} on x_t: slope, intercept and residual variance are the posterior's."""
    d = Diffusion(100, "linear")
    t, N, x0 = 30, 400_000, 0.5
    g = torch.Generator().manual_seed(2)
    x_prev = d.q_sample(torch.full((N,), x0, dtype=torch.float64), t - 1,
                        torch.randn(N, generator=g, dtype=torch.float64))
    x_t = d.q_step(x_prev, t, torch.randn(N, generator=g, dtype=torch.float64))
    A = torch.stack([x_t, torch.ones_like(x_t)], 1)
    coef = torch.linalg.lstsq(A, x_prev[:, None]).solution.squeeze(1)
    resid_var = (x_prev - A @ coef).var().item()
    probe = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    mean, var, _ = d.q_posterior_mean_variance(torch.full((3,), x0, dtype=torch.float64), probe,
                                               torch.full((3,), t))
    torch.testing.assert_close(mean, coef[0] * probe + coef[1], atol=2e-3, rtol=0)
    assert resid_var == pytest.approx(var[0].item(), rel=0.02)


# ----- p(x_{t-1} | x_t) and the parameterisations --------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_p_mean_with_an_oracle_network_is_the_posterior_mean(prediction):
    """A network that outputs the true target makes p's mean the true posterior mean."""
    d = Diffusion(100, "linear", prediction=prediction)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.randint(1, 100, (8,), generator=g)
    x_t = d.q_sample(x0, t, noise)
    oracle = lambda x, tt: d.target(x0, tt, noise)  # noqa: E731
    out = d.p_mean_variance(oracle, x_t, t)
    true_mean, true_var, _ = d.q_posterior_mean_variance(x0, x_t, t)
    torch.testing.assert_close(out.mean, true_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.pred_x0, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.pred_eps, noise, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.variance, true_var)
    assert float(d.loss_simple(oracle, x0, t, noise)) < 1e-12


def test_p_mean_is_ho_eq_11_for_eps_prediction():
    """mu = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta)  (Ho et al. 2020, eq. 11)."""
    d = Diffusion(1000, "linear")
    x_t = torch.randn(16, 2, dtype=torch.float64)
    t = torch.arange(0, 1000, 64)[:16]
    model = GaussianOracle(d, 0.2, 0.5)
    eps = model(x_t, t)
    b = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)[t][:, None]
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t][:, None]
    ref = (x_t - b / (1 - abar).sqrt() * eps) / (1 - b).sqrt()
    out = d.p_mean_variance(model, x_t, t, variance="fixed_large")
    torch.testing.assert_close(out.mean, ref, atol=1e-4, rtol=1e-4)
    # fixed_large is beta_t (except at t = 0, where tilde beta_2 keeps the decoder from collapsing)
    torch.testing.assert_close(out.variance[1:], b[1:], atol=0, rtol=1e-5)


def test_extract_broadcasts_over_image_shape():
    coef = torch.arange(10.0)
    out = extract(coef, torch.tensor([3, 7]), torch.Size([2, 3, 5, 5]))
    assert out.shape == (2, 1, 1, 1) and out.flatten().tolist() == [3.0, 7.0]


# ----- bad input ---------------------------------------------------------------------------------
def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="Unknown schedule"):
        Diffusion(100, "quadratic")
    for bad_T in (1, 0, 1.5, True):
        with pytest.raises(ValueError, match="T"):
            Diffusion(bad_T)
    with pytest.raises(ValueError, match="Unknown prediction"):
        Diffusion(10, prediction="score")
    d = Diffusion(10)
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        d.q_sample(x, torch.full((4,), 10))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        d.q_sample(x, -1)
    with pytest.raises(ValueError, match="shape"):
        d.q_sample(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        d.q_sample(x, torch.zeros(4))
    with pytest.raises(ValueError, match="noise shape"):
        d.q_sample(x, 0, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="shape"):
        d.q_posterior_mean_variance(x, torch.zeros(4, 3), 1)
    with pytest.raises(ValueError, match="Unknown variance"):
        d.p_mean_variance(lambda a, b: a, x, 1, variance="learned")
    with pytest.raises(ValueError, match="model output"):
        d.p_mean_variance(lambda a, b: a[:, :1], x, 1)


# ----- exercise checks: right answers pass, typical mistakes fail -------------------------------------
def test_exercise_checks_accept_right_and_reject_wrong_answers():
    from course_lib.course import checks
    from course_lib.course.checks import ExerciseError
    from course_lib.losses import normal_kl
    checks.check_alphas_cumprod(lambda b: torch.cumprod(1 - b, 0))
    checks.check_q_sample(lambda x0, a, e: a ** 0.5 * x0 + (1 - a) ** 0.5 * e)

    def posterior(x0, x_t, beta, abar, abar_prev):
        mean = (abar_prev ** 0.5 * beta * x0 + (1 - beta) ** 0.5 * (1 - abar_prev) * x_t) / (1 - abar)
        return mean, (1 - abar_prev) / (1 - abar) * beta
    checks.check_posterior(posterior)
    checks.check_normal_kl(lambda m1, v1, m2, v2: normal_kl(m1, v1.log(), m2, v2.log()))
    wrong = [
        (checks.check_alphas_cumprod, lambda b: torch.cumprod(b, 0)),
        (checks.check_alphas_cumprod, lambda b: 1 - b),
        (checks.check_q_sample, lambda x0, a, e: a * x0 + (1 - a) * e),
        (checks.check_posterior, lambda x0, x_t, b, a, ap: (x_t, b)),
        (checks.check_posterior, lambda *args: posterior(*args)[0]),
        (checks.check_normal_kl, lambda m1, v1, m2, v2: normal_kl(m2, v2.log(), m1, v1.log())),
        (checks.check_normal_kl, lambda m1, v1, m2, v2: 1 / 0),
    ]
    for check, fn in wrong:
        with pytest.raises(ExerciseError):
            check(fn)


class _CountReadbacks(torch.overrides.TorchFunctionMode):
    """Counts the calls that read a tensor's values back to Python (a device sync on a GPU)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.item, torch.Tensor.__int__, torch.Tensor.tolist):
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_a_reverse_chain_checks_its_timesteps_without_reading_them_back():
    from course_lib.sampling import reconstruct
    from course_lib.scoring import noise_prediction_error
    d = Diffusion(1000)
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    model = lambda x, t: 0.1 * x   # noqa: E731
    with _CountReadbacks() as counter:
        reconstruct(d, model, x0, 250, steps=5, generator=torch.Generator().manual_seed(0))
        noise_prediction_error(d, model, x0, (10, 300), antithetic=True)
        d.loss_simple(model, x0)
        d.p_mean_variance(model, x0, 7)            # a Python int is checked as an int
    assert counter.calls == 0
    t = torch.tensor([3, 5])
    with _CountReadbacks() as counter:
        checked = d.check_t(t, x0)                 # a tensor from outside is read back once ...
        d.p_mean_variance(model, x0, checked)      # ... and passes through the chain unread
    assert counter.calls == 2                      # int(t.min()) and int(t.max())


def test_timesteps_checked_once_are_still_refused_when_out_of_range():
    d = Diffusion(10)
    x = torch.zeros(2, 1, 2, 2)
    d.check_t(torch.tensor([1, 2]), x)
    with pytest.raises(ValueError, match=r"got range \[3, 10\]"):
        d.check_t(torch.tensor([3, 10]), x)        # another tensor: checked afresh
    with pytest.raises(ValueError, match=r"got range \[10, 10\]"):
        d.q_sample(x, 10)
    with pytest.raises(ValueError, match="must be an int in \\[0, 9\\]"):
        d.timesteps(10, 2)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        d.check_t(d.timesteps(1, 3), x)            # a checked tensor of the wrong batch is refused


def test_device_copies_of_the_schedule_are_made_once_and_freed_with_it(monkeypatch):
    from course_lib import memo
    coef = torch.arange(5.0)
    device = torch.device("meta")                  # another device than coef's, available everywhere
    first = memo.on_device(coef, device)
    assert memo.on_device(coef, device) is first and first.device == device
    key = (id(coef), device)
    assert key in memo._DEVICE_COPIES
    del coef, first
    assert key not in memo._DEVICE_COPIES


def test_a_timestep_checked_for_one_chain_length_is_checked_again_for_another():
    t = Diffusion(1000).timesteps(500, 2)          # in range for T = 1000 ...
    with pytest.raises(ValueError, match=r"got range \[500, 500\]"):
        Diffusion(10).check_t(t, torch.zeros(2, 1))   # ... not for T = 10


def test_a_diffusion_is_a_plain_value_that_pickles():
    import pickle
    d = Diffusion(50, "cosine", prediction="v")
    d.check_t(d.timesteps(3, 2), torch.zeros(2, 1))
    back = pickle.loads(pickle.dumps(d))
    assert repr(back) == repr(d) and torch.equal(back.alphas_cumprod, d.alphas_cumprod)
