"""Do the conventions card's converters agree with each other and with diffusers' schedulers?"""
from __future__ import annotations

import pytest
import torch

from course import conventions as cv
from course.edm import vp_sigmas
from course.guidance import cfg_combine
from course.schedules import make_schedule
from course.velocity import flow_time_to_sde_time


def test_cfg_weight_and_guidance_scale_describe_the_same_combination():
    """Is (1 + w) cond - w uncond the same as diffusers' uncond + s (cond - uncond) with s = 1 + w?"""
    cond, uncond = torch.randn(5, 3), torch.randn(5, 3)
    for w in (0.0, 0.5, 3.0):
        s = cv.guidance_scale_from_w(w)
        assert torch.allclose(cfg_combine(cond, uncond, w), uncond + s * (cond - uncond), atol=1e-6)
        assert cv.w_from_guidance_scale(s) == pytest.approx(w)


def test_sigma_and_alpha_bar_round_trip():
    """Is alpha_bar_from_sigma the inverse of course.edm.vp_sigmas?"""
    alpha_bar = make_schedule(1000, "cosine")[1]
    assert torch.allclose(cv.alpha_bar_from_sigma(vp_sigmas(alpha_bar).double()), alpha_bar.double(), rtol=1e-4)


def test_the_two_flow_clocks():
    """Is SD3's clock the reverse of notebook 06's, and the same direction as notebook 05's?"""
    t = torch.rand(10)
    assert torch.allclose(cv.flow_time_from_sd3_time(cv.sd3_time_from_flow_time(t)), t)
    assert torch.allclose(cv.sd3_time_from_flow_time(t), flow_time_to_sde_time(t))


def test_step_to_continuous_time_ends_at_one():
    """Does the last DDPM step T-1 map to Song et al.'s t = 1, and step 0 to 1/T?"""
    steps = torch.tensor([0, 999])
    assert torch.allclose(cv.vp_continuous_time_from_step(steps, 1000), torch.tensor([0.001, 1.0], dtype=torch.float64))


def test_diffusers_uses_the_same_alpha_bar_and_sigmas():
    """Do diffusers' DDPMScheduler and EulerDiscreteScheduler (no download) hold this course's alpha_bar and sigmas?"""
    diffusers = pytest.importorskip("diffusers", reason="diffusers is a development dependency (quickstart installs it)")
    T = 1000
    alpha_bar = make_schedule(T, "linear")[1]
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    assert torch.allclose(ddpm.alphas_cumprod.double(), alpha_bar.double(), atol=1e-6)
    euler = diffusers.EulerDiscreteScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4,
                                             beta_end=0.02)
    euler.set_timesteps(T)
    ours = vp_sigmas(alpha_bar).flip(0)  # diffusers lists sigmas from the noisiest step down
    assert torch.allclose(euler.sigmas[:-1].double(), ours.double(), rtol=1e-3)  # diffusers: float32 cumprod
