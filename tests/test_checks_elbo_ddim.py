"""The exercise checks for the ELBO term (notebook 03), the DDIM step and the three parameterisations
(notebook 04) and the DDIM reconstruction (notebook 06): they pass a correct answer, written independently of course_lib.course.solutions, and reject the
typical wrong ones with a message that names the mistake."""
import math

import pytest
import torch

from course_lib.course import checks
from course_lib.course.checks import ExerciseError
from course_lib.diffusion import Diffusion
from course_lib.losses import normal_kl
from course_lib.sampling import reconstruct


def elbo_term(x0, x_t, eps_theta, beta, abar, abar_prev, *, model_var="tilde", alpha_root=True, root=True):
    """Written with the library's posterior and KL (log-variances), independently of the solutions module."""
    d_mean = (math.sqrt(abar_prev) * beta * x0 + math.sqrt(1 - beta) * (1 - abar_prev) * x_t) / (1 - abar)
    tilde = (1 - abar_prev) / (1 - abar) * beta
    scale = math.sqrt(1 - abar) if root else 1 - abar
    mu = (x_t - beta / scale * eps_theta) / (math.sqrt(1 - beta) if alpha_root else 1.0)
    var = tilde if model_var == "tilde" else beta
    return normal_kl(d_mean, torch.full_like(x0, math.log(tilde)), mu, torch.full_like(x0, math.log(var)))


def test_elbo_term_check_accepts_a_correct_term():
    assert checks.check_elbo_term(elbo_term)
    assert checks.check_elbo_term(lambda *a: elbo_term(*a).float())


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: elbo_term(*a, model_var="beta"), "variance beta_t"),
    (lambda *a: elbo_term(*a, alpha_root=False), "1 / sqrt\\(alpha_t\\)"),
    (lambda *a: elbo_term(*a, root=False), "instead of its square root"),
    (lambda *a: 2 * elbo_term(*a), "off by up to"),
    (lambda *a: elbo_term(*a).sum(), "off by up to"),           # a scalar is broadcast, then compared
])
def test_elbo_term_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_elbo_term(wrong)


def ddim_update(x_t, eps_hat, abar_t, abar_prev, eta, z, *, share=True, rescale_only=False):
    sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar_t)) * math.sqrt(1 - abar_t / abar_prev)
    if rescale_only:
        return math.sqrt(abar_prev / abar_t) * x_t
    x0_hat = (x_t - math.sqrt(1 - abar_t) * eps_hat) / math.sqrt(abar_t)
    direction = math.sqrt(1 - abar_prev - (sigma ** 2 if share else 0.0))
    return math.sqrt(abar_prev) * x0_hat + direction * eps_hat + sigma * z


def test_ddim_check_accepts_a_correct_step():
    assert checks.check_ddim_update(ddim_update)


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: ddim_update(*a, share=False), "off the DDPM posterior"),
    (lambda x, e, a, ap, eta, z: ddim_update(x, e, a, ap, eta, 0 * z), "the mean is right but the noise is not"),
    (lambda *a: ddim_update(*a, rescale_only=True), "DDPM posterior|only rescales"),
])
def test_ddim_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_ddim_update(wrong)


def test_ddim_check_names_a_missing_sigma_share_when_eta_is_fractional():
    def wrong(x, e, a, ap, eta, z):                      # right at eta = 0 and 1, loses the share in between
        return ddim_update(x, e, a, ap, eta, z, share=eta in (0.0, 1.0))
    with pytest.raises(ExerciseError, match="keeps all of 1 - abar_prev"):
        checks.check_ddim_update(wrong)


def ddim_reconstruct(model, x0, eps, abar, taus, *, last="x0", renoise="eps_hat"):
    x = abar[taus[0]].sqrt() * x0 + (1 - abar[taus[0]]).sqrt() * eps
    for i, tau in enumerate(taus):
        e = model(x, torch.full((len(x),), tau, dtype=torch.long))
        x0_hat = (x - (1 - abar[tau]).sqrt() * e) / abar[tau].sqrt()
        if i + 1 == len(taus) and last == "x0":
            return x0_hat
        a = abar[taus[i + 1]] if i + 1 < len(taus) else abar[0]
        x = a.sqrt() * x0_hat + (1 - a).sqrt() * (e if renoise == "eps_hat" else eps)
    return x


def test_reconstruction_check_accepts_a_correct_loop_that_matches_the_library():
    assert checks.check_ddim_reconstruction(ddim_reconstruct)
    # the loop is what course_lib.sampling.reconstruct runs (same noise, K levels from t*)
    d = Diffusion(1000, "linear")
    abar = torch.cumprod(1 - d.betas.double(), 0)
    model = checks.GaussianEpsOracle(abar)
    x0 = torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lib, nfe = reconstruct(d, model, x0, 100, steps=4, noise=eps)
    from course_lib.sampling import ddim_timesteps
    mine = ddim_reconstruct(model, x0, eps, abar, ddim_timesteps(99, 4))
    assert nfe == 4 and torch.allclose(mine, lib.double(), atol=1e-5)


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: ddim_reconstruct(*a, last="x"), "re-noises to level 0"),
    (lambda *a: ddim_reconstruct(*a, renoise="eps"), "original eps"),
    (lambda m, x0, eps, abar, taus: ddim_reconstruct(m, x0, 0 * eps, abar, taus), "off by up to"),
    (lambda m, x0, eps, abar, taus: ddim_reconstruct(m, x0, eps, abar, taus)[:1], "shape"),
])
def test_reconstruction_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_ddim_reconstruction(wrong)


def x0_and_v(x_t, eps_hat, abar, *, v_sign=1.0, swap=False, x0_root=True):
    """Written from Salimans & Ho's definitions, independently of the solutions module."""
    s, n = math.sqrt(abar), math.sqrt(1 - abar)
    x0 = (x_t - (n if x0_root else 1 - abar) * eps_hat) / s
    v = s * x0 - n * eps_hat if swap else s * eps_hat - n * x0
    return x0, v_sign * v


def test_parameterization_check_accepts_correct_conversions():
    assert checks.check_parameterizations(x0_and_v)
    assert checks.check_parameterizations(lambda *a: [u.float() for u in x0_and_v(*a)])   # float32, as a list


def test_parameterizations_agree_with_the_library_split_of_a_v_output():
    d = Diffusion(50, "linear", prediction="v")
    x_t, eps = torch.randn(2, 6, dtype=torch.float64)
    t = torch.full((6,), 20)
    x0, v = x0_and_v(x_t, eps, float(d.alphas_cumprod_f64[20]))
    x0_lib, eps_lib = d.split_output(v, x_t, t)
    assert torch.allclose(eps_lib.double(), eps, atol=1e-5) and torch.allclose(x0_lib.double(), x0, atol=1e-5)


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: x0_and_v(*a, x0_root=False), r"does not\s+give x_t back"),
    (lambda *a: x0_and_v(*a, v_sign=-1.0), "opposite sign"),
    (lambda *a: x0_and_v(*a, swap=True), "swapped places"),
    (lambda *a: (x0_and_v(*a)[0], 2 * x0_and_v(*a)[1]), "off by up to"),
    (lambda *a: x0_and_v(*a)[0], "expected a pair"),
])
def test_parameterization_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_parameterizations(wrong)
