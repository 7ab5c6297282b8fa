"""Grayscale augmentations on batches, written with torch ops (no torchvision).

Geometry (random resized crop, rotation, flips) is one affine map per sample applied with
``grid_sample``, so a crop of any source size lands on a fixed output size in one step and
the same map can be applied to labels (nearest). Intensity ops (brightness/contrast jitter,
Gaussian blur, Gaussian noise) work on [0, 1] images. Inputs carry each sample's true
``sizes`` (height, width) so padded patches are cropped only inside their real content.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Defaults: the CEM500K MoCoV2 recipe."""

    out_size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotate_p: float = 0.5
    rotate_degrees: float = 180.0
    flip: bool = True
    brightness: float = 0.4
    contrast: float = 0.4
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_p: float = 0.5
    noise_var: tuple[float, float] = (1e-5, 1e-4)


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def random_affine(sizes: torch.Tensor, canvas: tuple[int, int], cfg: AugmentConfig,
                  gen: torch.Generator | None = None) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices: a random resized crop inside each sample's true
    region (``sizes`` (B, 2) = height, width, top-left of a ``canvas``-sized array), rotated and
    flipped about the crop centre."""
    n, device = sizes.shape[0], sizes.device
    h_img, w_img = sizes[:, 0].float(), sizes[:, 1].float()
    area = h_img * w_img * _uniform(n, *cfg.scale, gen, device)
    log_ratio = _uniform(n, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), gen, device)
    aspect = torch.exp(log_ratio)
    crop_w = torch.minimum(torch.sqrt(area * aspect), w_img)
    crop_h = torch.minimum(torch.sqrt(area / aspect), h_img)
    cx = crop_w / 2 + torch.rand(n, generator=gen, device=device) * (w_img - crop_w)
    cy = crop_h / 2 + torch.rand(n, generator=gen, device=device) * (h_img - crop_h)
    angle = torch.zeros(n, device=device)
    if cfg.rotate_p > 0:
        rotate = torch.rand(n, generator=gen, device=device) < cfg.rotate_p
        angle = torch.where(rotate, _uniform(n, -cfg.rotate_degrees, cfg.rotate_degrees, gen, device), angle)
    angle = angle * math.pi / 180
    fx = fy = torch.ones(n, device=device)
    if cfg.flip:
        fx = torch.where(torch.rand(n, generator=gen, device=device) < 0.5, -1.0, 1.0)
        fy = torch.where(torch.rand(n, generator=gen, device=device) < 0.5, -1.0, 1.0)
    ch, cw = canvas
    # output u in [-1, 1] -> source pixel-edge coords p = c + R · diag(w/2·fx, h/2·fy) · u;
    # grid_sample (align_corners=False) wants 2p/W − 1.
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = crop_w / 2 * fx, crop_h / 2 * fy
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = cos * sx * 2 / cw
    theta[:, 0, 1] = -sin * sy * 2 / cw
    theta[:, 0, 2] = 2 * cx / cw - 1
    theta[:, 1, 0] = sin * sx * 2 / ch
    theta[:, 1, 1] = cos * sy * 2 / ch
    theta[:, 1, 2] = 2 * cy / ch - 1
    return theta


def warp(images: torch.Tensor, theta: torch.Tensor, out_size: int, mode: str = "bilinear") -> torch.Tensor:
    """Apply `random_affine` maps; outside the source is reflected."""
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="reflection", align_corners=False)


def jitter(images: torch.Tensor, brightness: float, contrast: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Brightness × b and contrast around the per-image mean, b, c ∈ [1 − s, 1 + s]; clamped to [0, 1]."""
    n, device = images.shape[0], images.device
    if brightness > 0:
        images = images * _uniform(n, 1 - brightness, 1 + brightness, gen, device).view(-1, 1, 1, 1)
    if contrast > 0:
        c = _uniform(n, 1 - contrast, 1 + contrast, gen, device).view(-1, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * c + mean
    return images.clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one σ per image (grouped convolution)."""
    n, c, h, w = images.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-x[None] ** 2 / (2 * sigma[:, None].to(images.dtype) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)
    flat = images.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def intensity(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Jitter, blur (p ``blur_p``) and noise (p ``noise_p``) on [0, 1] images."""
    n, device = images.shape[0], images.device
    images = jitter(images, cfg.brightness, cfg.contrast, gen)
    if cfg.blur_p > 0:
        sigma = _uniform(n, *cfg.blur_sigma, gen, device)
        blurred = gaussian_blur(images, sigma)
        pick = (torch.rand(n, generator=gen, device=device) < cfg.blur_p).view(-1, 1, 1, 1)
        images = torch.where(pick, blurred, images)
    if cfg.noise_p > 0:
        std = torch.sqrt(_uniform(n, *cfg.noise_var, gen, device)).view(-1, 1, 1, 1)
        pick = (torch.rand(n, generator=gen, device=device) < cfg.noise_p).view(-1, 1, 1, 1)
        noise = torch.randn(images.shape, generator=gen, device=device) * std
        images = torch.where(pick, images + noise, images)
    return images


def augment_view(images: torch.Tensor, sizes: torch.Tensor, cfg: AugmentConfig, mean: float, std: float,
                 gen: torch.Generator | None = None) -> torch.Tensor:
    """One MoCo view: uint8/[0,1] batch (B, 1, H, W) → augmented, normalised (B, 1, S, S)."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    theta = random_affine(sizes, tuple(images.shape[-2:]), cfg, gen)
    out = intensity(warp(images, theta, cfg.out_size), cfg, gen)
    return (out - mean) / std
