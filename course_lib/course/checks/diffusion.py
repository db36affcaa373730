"""Self-checks for the exercises of notebooks 02 (forward diffusion), 03 (the ELBO) and
04 (sampling and the score).

Each check calls the learner's function on small cases (float64) and compares it with an independent
reference: numpy cumulative products, Gaussian conditioning, ``torch.distributions``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from course_lib.course.checks._core import call_learner as _run, fail, passed

__all__ = ["check_alphas_cumprod", "check_q_sample", "check_posterior", "check_normal_kl", "check_elbo_term",
           "check_ddim_update", "check_parameterizations"]


def _numbers(x, what: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The learner's answer as float64 numpy of a given shape, or a clear failure."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        fail(what, f"{name} could not be turned into numbers ({err}).", "Return a torch tensor.")
        raise  # unreachable
    if arr.shape != shape:
        try:
            arr = np.broadcast_to(arr, shape)
        except ValueError:
            fail(what, f"{name} has shape {arr.shape}, expected {shape}.",
                 "All the operations are elementwise: keep the input's shape.")
    return arr


def _posterior_by_conditioning(x0, x_t, beta: float, abar: float, abar_prev: float):
    """Mean and variance of q(x_{t-1} | x_t, x_0) by conditioning the joint Gaussian of (x_{t-1}, x_t) given x_0:
    Var(x_{t-1}) = 1 - abar_prev, Cov(x_{t-1}, x_t) = sqrt(1 - beta) (1 - abar_prev), Var(x_t) = 1 - abar."""
    s11, s12, s22 = 1 - abar_prev, math.sqrt(1 - beta) * (1 - abar_prev), 1 - abar
    return math.sqrt(abar_prev) * x0 + s12 / s22 * (x_t - math.sqrt(abar) * x0), s11 - s12 ** 2 / s22


def _rng_tensors(seed: int, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


# --- 02: abar_t = prod_{s <= t} (1 - beta_s) -----------------------------------------------------
def check_alphas_cumprod(fn: Callable) -> bool:
    """``fn(betas) -> alphas_cumprod``: betas (T,) float64 tensor in (0, 1); returns
    abar_t = prod_{s=1}^{t} (1 - beta_s), shape (T,)."""
    what = "alphas_cumprod"
    for T in (5, 1000):
        betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64)
        want = np.cumprod(1 - betas.numpy())
        got = _numbers(_run(fn, what, betas.clone()), what, "alphas_cumprod", (T,))
        if np.isclose(got[0], 1.0) and not np.isclose(want[0], 1.0):
            fail(what, "your first entry is 1: you included the empty product (t = 0).",
                 "abar_1 = 1 - beta_1 already: the product starts at s = 1.")
        if np.allclose(got, np.cumprod(betas.numpy()), rtol=1e-6):
            fail(what, "you multiplied the betas; the signal kept per step is alpha = 1 - beta.")
        if not np.allclose(got, want, rtol=1e-6, atol=1e-12):
            i = int(np.argmax(np.abs(got - want)))
            fail(what, f"with T = {T}, entry {i} is {got[i]:.6g}, expected {want[i]:.6g}.",
                 "alphas = 1 - betas, then a cumulative product: torch.cumprod(alphas, dim=0).")
    return passed(what)


# --- 02: x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps ----------------------------------------------------
def check_q_sample(fn: Callable) -> bool:
    """``fn(x0, abar_t, eps) -> x_t``: the closed form of q(x_t | x_0) for a scalar abar_t in (0, 1)."""
    what = "q_sample (closed form)"
    x0, eps = _rng_tensors(0, (4, 3), (4, 3))
    for abar in (0.9, 0.25, 1e-3):
        want = math.sqrt(abar) * x0.numpy() + math.sqrt(1 - abar) * eps.numpy()
        got = _numbers(_run(fn, what, x0.clone(), abar, eps.clone()), what, "x_t", (4, 3))
        if np.allclose(got, abar * x0.numpy() + (1 - abar) * eps.numpy()):
            fail(what, "you scaled by abar and (1 - abar) instead of their square roots.",
                 "The *variances* add up to one: (sqrt(abar))^2 + (sqrt(1 - abar))^2 = 1.")
        if not np.allclose(got, want, atol=1e-10):
            fail(what, f"with abar_t = {abar} the result differs from sqrt(abar) x0 + sqrt(1 - abar) eps "
                       f"by up to {np.abs(got - want).max():.3g}.",
                 "x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps, elementwise.")
    return passed(what)


# --- 03: q(x_{t-1} | x_t, x_0) ----------------------------------------------------------------------
def check_posterior(fn: Callable) -> bool:
    """``fn(x0, x_t, beta_t, abar_t, abar_prev) -> (mean, variance)`` of q(x_{t-1} | x_t, x_0)
    (Ho et al. 2020, eq. 6-7). Checked against conditioning the joint Gaussian of (x_{t-1}, x_t)."""
    what = "posterior q(x_{t-1} | x_t, x_0)"
    x0, x_t = _rng_tensors(1, (5,), (5,))
    for abar_prev, beta in ((0.99, 0.01), (0.5, 0.02), (0.05, 0.3)):
        abar = abar_prev * (1 - beta)
        # Independent route: Var(x_{t-1}|x_0) = 1 - abar_prev, Cov(x_{t-1}, x_t|x_0) = sqrt(1-beta) (1-abar_prev)
        want_mean, want_var = _posterior_by_conditioning(x0.numpy(), x_t.numpy(), beta, abar, abar_prev)
        out = _run(fn, what, x0.clone(), x_t.clone(), beta, abar, abar_prev)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            fail(what, "return a pair (mean, variance).")
        mean = _numbers(out[0], what, "the mean", (5,))
        var = _numbers(out[1], what, "the variance", (5,))
        if np.allclose(var, math.sqrt(want_var)):
            fail(what, "your variance is the standard deviation.",
                 "tilde beta_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t, no square root.")
        if not np.allclose(var, want_var, rtol=1e-8):
            fail(what, f"for beta_t = {beta}, abar_(t-1) = {abar_prev} the variance is {float(var.flat[0]):.6g}, "
                       f"expected {want_var:.6g}.", "tilde beta_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t.")
        if not np.allclose(mean, want_mean, atol=1e-10):
            fail(what, f"for beta_t = {beta}, abar_(t-1) = {abar_prev} the mean is off by up to "
                       f"{np.abs(mean - want_mean).max():.3g}.",
                 "tilde mu = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / "
                 "(1 - abar_t) x_t, with alpha_t = 1 - beta_t.")
    return passed(what)


# --- 03: KL between two Gaussians -------------------------------------------------------------------
def check_normal_kl(fn: Callable) -> bool:
    """``fn(mu1, var1, mu2, var2) -> KL(N(mu1, var1) || N(mu2, var2))`` elementwise, in nats.
    Compared with ``torch.distributions.kl_divergence``."""
    from torch.distributions import Normal, kl_divergence
    what = "normal_kl"
    mu1, mu2, a, b = _rng_tensors(2, (50,), (50,), (50,), (50,))
    var1, var2 = a.exp(), (2 * b).exp()
    want = kl_divergence(Normal(mu1, var1.sqrt()), Normal(mu2, var2.sqrt())).numpy()
    got = _numbers(_run(fn, what, mu1.clone(), var1.clone(), mu2.clone(), var2.clone()), what, "the KL", (50,))
    same = _numbers(_run(fn, what, mu1.clone(), var1.clone(), mu1.clone(), var1.clone()), what, "the KL", (50,))
    if np.abs(same).max() > 1e-9:
        fail(what, f"KL(p || p) should be 0, you return up to {np.abs(same).max():.3g}.",
             "Check the '- 1' inside the bracket and the log of the variance ratio.")
    swapped = kl_divergence(Normal(mu2, var2.sqrt()), Normal(mu1, var1.sqrt())).numpy()
    if np.allclose(got, swapped, rtol=1e-8):
        fail(what, "you computed KL(q || p) instead of KL(p || q): the KL is not symmetric.",
             "The first distribution's variance goes in the numerator: var1 / var2.")
    if not np.allclose(got, want, rtol=1e-8, atol=1e-10):
        i = int(np.argmax(np.abs(got - want)))
        fail(what, f"for mu1={mu1[i]:.3f}, var1={var1[i]:.3f}, mu2={mu2[i]:.3f}, var2={var2[i]:.3f} you return "
                   f"{got[i]:.5f}, torch.distributions gives {want[i]:.5f}.",
             "KL = 0.5 * (log(var2 / var1) + (var1 + (mu1 - mu2)^2) / var2 - 1).")
    return passed(what)


# --- 03: one term of the ELBO as a KL ------------------------------------------------------------------
def check_elbo_term(fn: Callable) -> bool:
    """``fn(x0, x_t, eps_theta, beta_t, abar_t, abar_prev) -> L_{t-1}`` elementwise, in nats: the KL from the
    posterior q(x_{t-1} | x_t, x_0) = N(tilde mu, tilde beta) to the model's step N(mu_theta, tilde beta), with
    mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t). Compared with torch.distributions,
    the posterior taken from Gaussian conditioning, and with lambda_t ||eps - eps_theta||^2 (Ho et al. eq. 12)."""
    from torch.distributions import Normal, kl_divergence
    what = "ELBO term L_{t-1}"
    x0, eps, wrong = _rng_tensors(3, (6,), (6,), (6,))
    for abar_prev, beta in ((0.99, 0.01), (0.5, 0.02), (0.05, 0.3)):
        abar, alpha = abar_prev * (1 - beta), 1 - beta
        x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
        eps_theta = eps + 0.5 * wrong                                          # an imperfect network
        post_mean, post_var = _posterior_by_conditioning(x0, x_t, beta, abar, abar_prev)
        mu_theta = (x_t - beta / math.sqrt(1 - abar) * eps_theta) / math.sqrt(alpha)
        want = kl_divergence(Normal(post_mean, math.sqrt(post_var)), Normal(mu_theta, math.sqrt(post_var))).numpy()
        lam = beta ** 2 / (2 * post_var * alpha * (1 - abar))
        assert np.allclose(want, lam * (eps - eps_theta).numpy() ** 2)        # the identity of section 4
        got = _numbers(_run(fn, what, x0.clone(), x_t.clone(), eps_theta.clone(), beta, abar, abar_prev),
                       what, "L_{t-1}", (6,))
        if np.allclose(got, want, rtol=1e-6, atol=1e-10):
            continue
        beta_var = kl_divergence(Normal(post_mean, math.sqrt(post_var)), Normal(mu_theta, math.sqrt(beta))).numpy()
        no_alpha = kl_divergence(Normal(post_mean, math.sqrt(post_var)),
                                 Normal(x_t - beta / math.sqrt(1 - abar) * eps_theta, math.sqrt(post_var))).numpy()
        no_sqrt = kl_divergence(Normal(post_mean, math.sqrt(post_var)), Normal(
            (x_t - beta / (1 - abar) * eps_theta) / math.sqrt(alpha), math.sqrt(post_var))).numpy()
        if np.allclose(got, beta_var, rtol=1e-6):
            fail(what, "you gave the model's step the variance beta_t; here it is the posterior's, tilde beta_t.",
                 "Use the variance that posterior_mean_variance returns for both Gaussians.")
        if np.allclose(got, no_alpha, rtol=1e-6):
            fail(what, "your model mean lacks the factor 1 / sqrt(alpha_t).",
                 "mu_theta = (x_t - beta_t / sqrt(1 - abar_t) * eps_theta) / sqrt(alpha_t), alpha_t = 1 - beta_t.")
        if np.allclose(got, no_sqrt, rtol=1e-6):
            fail(what, "your model mean divides by 1 - abar_t instead of its square root.")
        fail(what, f"for beta_t = {beta}, abar_(t-1) = {abar_prev} your term is off by up to "
                   f"{np.abs(got - want).max():.3g} nats.",
             "L_{t-1} = KL(N(tilde mu, tilde beta) || N(mu_theta, tilde beta)): the posterior from "
             "posterior_mean_variance, the model mean from eps_theta, then gaussian_kl.")
    return passed(what)


# --- 04: one DDIM step --------------------------------------------------------------------------------
def check_ddim_update(fn: Callable) -> bool:
    """``fn(x_t, eps_hat, abar_t, abar_prev, eta, z) -> x_prev``: the DDIM step of Song et al. (2021, eq. 12)
    with sigma_t(eta) of eq. 16. Checked against the DDPM posterior (eta = 1 between consecutive levels must
    give N(tilde mu(hat x_0, x_t), tilde beta)), then for other eta and skipped levels against eq. 12 in float64
    (which ``course_lib.sampling.ddim_step`` is asserted to match)."""
    from course_lib.diffusion import Diffusion
    from course_lib.sampling import ddim_step
    what = "DDIM step"
    d = Diffusion(50, "linear")
    abar64 = torch.cumprod(1 - d.betas.double(), 0)
    x_t, eps_hat, z = _rng_tensors(4, (7,), (7,), (7,))

    def model(x, t):                                                       # a network that answers eps_hat
        return eps_hat.to(x.dtype).expand_as(x)

    # eta = 1 on consecutive levels is ancestral DDPM: mean tilde mu(hat x_0, x_t), variance tilde beta
    t = 30
    a_t, a_prev = float(abar64[t]), float(abar64[t - 1])
    beta = 1 - a_t / a_prev
    x0_hat = (x_t - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t)
    post_mean = (math.sqrt(a_prev) * beta * x0_hat + math.sqrt(1 - beta) * (1 - a_prev) * x_t) / (1 - a_t)
    post_std = math.sqrt((1 - a_prev) / (1 - a_t) * beta)
    want = (post_mean + post_std * z).numpy()
    got = _numbers(_run(fn, what, x_t.clone(), eps_hat.clone(), a_t, a_prev, 1.0, z.clone()), what, "x_prev", (7,))
    if not np.allclose(got, want, rtol=1e-6, atol=1e-9):
        det = _numbers(_run(fn, what, x_t.clone(), eps_hat.clone(), a_t, a_prev, 1.0, torch.zeros(7,
                                                                                          dtype=torch.float64)),
                       what, "x_prev", (7,))
        if np.allclose(det, post_mean.numpy(), rtol=1e-6, atol=1e-9):
            fail(what, "with eta = 1 the mean is right but the noise is not: sigma_t(1) between neighbouring "
                       "levels is the DDPM posterior's standard deviation.",
                 "sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev), times z.")
        fail(what, f"with eta = 1 between neighbouring levels your step is off the DDPM posterior by up to "
                   f"{np.abs(got - want).max():.3g}.",
             "hat x_0 = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t); x_prev = sqrt(abar_prev) hat x_0 "
             "+ sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z.")
    # any eta, skipping levels: compare with the library
    for t, t_prev, eta in ((40, 20, 0.0), (40, 20, 0.5), (49, 0, 0.0), (10, 9, 0.3)):
        a_t, a_prev = float(abar64[t]), float(abar64[t_prev])
        library = ddim_step(d, model, x_t.clone(), t, t_prev, eta=eta, noise=z.clone()).numpy()   # float32 inside
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x0_hat = (x_t - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t)
        want = (math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev - sigma ** 2) * eps_hat + sigma * z).numpy()
        assert np.allclose(library, want, rtol=1e-4, atol=1e-5)              # eq. 12 is what the library runs
        got = _numbers(_run(fn, what, x_t.clone(), eps_hat.clone(), a_t, a_prev, eta, z.clone()), what, "x_prev",
                       (7,))
        if np.allclose(got, want, rtol=1e-6, atol=1e-9):
            continue
        no_share = (math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps_hat + sigma * z).numpy()
        if eta > 0 and np.allclose(got, no_share, rtol=1e-6, atol=1e-9):
            fail(what, f"with eta = {eta} the direction term keeps all of 1 - abar_prev.",
                 "The noise z takes its share sigma^2 of the variance: sqrt(1 - abar_prev - sigma^2) eps_hat.")
        if eta == 0 and np.allclose(got, (x_t * math.sqrt(a_prev / a_t)).numpy(), rtol=1e-6):
            fail(what, "with eta = 0 your step only rescales x_t.", "Re-noise the estimate hat x_0 with eps_hat.")
        fail(what, f"from code level {t} to {t_prev} with eta = {eta} your step is off by up to "
                   f"{np.abs(got - want).max():.3g}.",
             "The direction term is sqrt(1 - abar_prev - sigma^2) eps_hat: the noise z takes its share sigma^2 "
             "of the variance 1 - abar_prev.")
    return passed(what)


# --- 04: eps, x_0 and v -------------------------------------------------------------------------------
def _pair(out, what: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        fail(what, f"the function returned {type(out).__name__}, expected a pair (x0_hat, v_hat).",
             "Return both: `return x0_hat, v_hat`.")
    return _numbers(out[0], what, "x0_hat", shape), _numbers(out[1], what, "v_hat", shape)


def check_parameterizations(fn: Callable) -> bool:
    """``fn(x_t, eps_hat, abar_t) -> (x0_hat, v_hat)``: the data point and the velocity (Salimans & Ho 2022)
    that a noise prediction implies at a level with abar_t. hat x_0 is checked by noising it back with eps_hat
    (it must give x_t), hat v against v = sqrt(abar) eps - sqrt(1 - abar) x_0 in float64, with the two ends of
    the chain (v = eps where abar = 1, v = -x_0 where abar = 0) as the hint."""
    what = "eps, x_0 and v"
    x_t, eps_hat = _rng_tensors(5, (9,), (9,))
    for abar in (0.999, 0.6, 0.05):
        x0_got, v_got = _pair(_run(fn, what, x_t.clone(), eps_hat.clone(), abar), what, (9,))
        back = math.sqrt(abar) * x0_got + math.sqrt(1 - abar) * eps_hat.numpy()        # q(x_t | x_0) with eps_hat
        if not np.allclose(back, x_t.numpy(), rtol=1e-6, atol=1e-9):
            fail(what, f"at abar_t = {abar}, noising your x0_hat with eps_hat (notebook 02's closed form) does not "
                       f"give x_t back: off by up to {np.abs(back - x_t.numpy()).max():.3g}.",
                 "x_t was made from x_0 and the noise by the closed form of notebook 02; solve it for x_0.")
        x0 = (x_t - math.sqrt(1 - abar) * eps_hat) / math.sqrt(abar)
        want = (math.sqrt(abar) * eps_hat - math.sqrt(1 - abar) * x0).numpy()
        if np.allclose(v_got, want, rtol=1e-6, atol=1e-9):
            continue
        if np.allclose(v_got, -want, rtol=1e-6, atol=1e-9):
            fail(what, f"at abar_t = {abar} your v_hat has the opposite sign.",
                 "In Salimans & Ho's convention v is +eps where abar_t = 1 and -x_0 where abar_t = 0.")
        swapped = (math.sqrt(abar) * x0 - math.sqrt(1 - abar) * eps_hat).numpy()
        if np.allclose(v_got, swapped, rtol=1e-6, atol=1e-9):
            fail(what, f"at abar_t = {abar} the noise and the data point have swapped places in your v_hat.",
                 "v is +eps where abar_t = 1 and -x_0 where abar_t = 0.")
        fail(what, f"at abar_t = {abar} your v_hat is off by up to {np.abs(v_got - want).max():.3g}.",
             "v mixes eps and x_0 with the square roots of abar_t and 1 - abar_t; check it at the ends: "
             "v = eps where abar_t = 1, v = -x_0 where abar_t = 0.")
    return passed(what)
