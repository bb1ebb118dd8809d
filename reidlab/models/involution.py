"""Involution (Li et al., "Involution: Inverting the Inheritance of Convolution", CVPR 2021), as used by MBGN Sec. 3.3.

A kernel is generated for every pixel from the feature at that pixel (spatial
specific), shared by the ``group_channels`` channels of a group (channel agnostic):

    H_{i,j} = phi(X_{i,j}) = W_1 ReLU(BN(W_0 X_{i,j}))              (Li et al. Eq. 6)
    Y_{i,j,k} = sum_{(u,v) in K x K} H_{i,j,u+K//2,v+K//2,ceil(kG/C)} X_{i+u,j+v,k}   (Li et al. Eq. 4)

MBGN: "each involution layer is designed in 7x7 kernel size and 16 group channels".
Stride is always 1 and padding ``K // 2``, so any (even or odd) H, W keeps its size.

Two implementations of Eq. 4 compute the same sum:

- :func:`involution_reference`: K*K shifted ``addcmul`` s under autograd (the
  readable one, tested against a pixel loop). Autograd records 49 slices and
  49 multiply-adds, and its backward pays 49 slice-backward copies of the padded
  input: ~95% of that layer's CPU time.
- :func:`involution` (used by :class:`Involution`): a ``torch.autograd.Function``
  with the same forward done in place into one buffer, and a hand-written
  backward that accumulates the input gradient and the kernel gradient in one
  pass over the K*K offsets each. Plain tensor ops only, so the same code runs on
  CPU and CUDA; ~20-40x faster than the reference's forward+backward on CPU.
  Low-precision inputs (bf16/fp16 under autocast) are computed in float32.

Initialisation as the official RedNet code (d-li14/involution,
``cls/mmcls/models/backbones/rednet.py``, ``RedNet.init_weights``): every conv
Kaiming-normal with ``mode="fan_out"``, ReLU gain and zero bias; every BN weight 1
and bias 0. RedNet also zero-initialises the last BN of each *residual* block so
that the block starts as the identity; MBGN's Involution Block has no residual
path (its output feeds only Eq. 1's conv blocks, whose product is Eq. 2), so a
zero last BN would make the relation, and both factors' gradients, exactly zero
for good. That half is therefore not applied here; its counterpart in GSRPA is
the optional zero-gamma last BN of Eq. 7 (``GSRPA(zero_init_attention=True)``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _check_kernel(x: torch.Tensor, kernel: torch.Tensor) -> tuple[int, int]:
    """Validate shapes; returns ``(groups, kernel_size)`` for ``x (B, C, H, W)``, ``kernel (B, G, K*K, H, W)``."""
    B, C, H, W = x.shape
    if kernel.dim() != 5 or kernel.shape[0] != B or tuple(kernel.shape[-2:]) != (H, W):
        raise ValueError(f"involution: kernel must be (B, G, K*K, H, W) for input {tuple(x.shape)}, "
                         f"got {tuple(kernel.shape)}")
    groups, area = kernel.shape[1], kernel.shape[2]
    size = int(round(area ** 0.5))
    if size * size != area or size % 2 != 1 or C % groups != 0:
        raise ValueError(f"involution: kernel {tuple(kernel.shape)} needs an odd K*K and C ({C}) divisible by G")
    return groups, size


def involution_reference(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Li et al. Eq. 4 as K*K shifted multiply-adds under autograd: ``x (B, C, H, W)``,
    ``kernel (B, G, K*K, H, W)`` (offsets in row-major order, as ``F.unfold``) -> ``(B, C, H, W)``.

    The reference the fast :func:`involution` is tested against.
    """
    G, K = _check_kernel(x, kernel)
    B, C, H, W = x.shape
    pad = K // 2
    padded = F.pad(x, (pad, pad, pad, pad)).view(B, G, C // G, H + 2 * pad, W + 2 * pad)  # (B, G, C/G, H+2p, W+2p)
    out = x.new_zeros(B, G, C // G, H, W)  # (B, G, C/G, H, W)
    for u in range(K):
        for v in range(K):
            shifted = padded[..., u:u + H, v:v + W]  # (B, G, C/G, H, W) pixel (i+u-p, j+v-p)
            out = out.addcmul(shifted, kernel[:, :, u * K + v].unsqueeze(2))  # (B, G, C/G, H, W)
    return out.view(B, C, H, W)  # (B, C, H, W)


# CPU: run the K*K passes over batch chunks of about this many elements per tensor, so that
# the output (or gradient) chunk stays in cache across the passes (measured 1.5-2.5x faster
# than whole-batch passes on 64x32 maps; small maps take the whole batch at once).
CPU_CHUNK_ELEMENTS = 1 << 19


def _batch_chunks(batch: int, per_image: int, device: torch.device) -> list[slice]:
    """Slices of the batch for one pass each: the whole batch on GPUs, cache-sized chunks on CPU."""
    step = batch if device.type != "cpu" else max(1, CPU_CHUNK_ELEMENTS // max(1, per_image))
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)]


class _InvolutionFunction(torch.autograd.Function):
    """Eq. 4 forward in place into one buffer; backward in one pass per offset for each gradient.

    Rows are laid out flat on the padded width ``Wp = W + 2p``: pixel (i, j) at ``i*Wp + j``,
    so the K*K shifted windows are contiguous slices at offsets ``u*Wp + v`` of the flattened
    padded input, and every multiply-add runs over one long contiguous row (fast on CPU also
    for 4- or 8-pixel-wide maps). The ``2p`` extra columns per row are computed and dropped.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        G, K = _check_kernel(x, kernel)
        B, C, H, W = x.shape
        pad = K // 2
        Wp = W + 2 * pad
        length = H * Wp  # output positions on the padded-width grid
        dtype = torch.promote_types(x.dtype, kernel.dtype)
        # bf16/fp16 (autocast): computed in float32 throughout, converted once here, not in every
        # multiply-add (mixed-dtype addcmul_ converts its operands on each of the K*K calls)
        compute = torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype
        padded = F.pad(x.to(compute), (pad, pad, pad, pad)).reshape(B, G, C // G, (H + 2 * pad) * Wp)
        padded = F.pad(padded, (0, 2 * pad))  # (B, G, C/G, Hp*Wp + 2p): the last window fits
        kernel = F.pad(kernel.to(compute), (0, 2 * pad)).reshape(B, G, K * K, length)  # (B, G, K*K, H*Wp)
        out = torch.zeros(B, G, C // G, length, dtype=compute, device=x.device)  # (B, G, C/G, H*Wp)
        for rows in _batch_chunks(B, C * length, x.device):
            chunk_out, chunk_in, chunk_kernel = out[rows], padded[rows], kernel[rows]
            for u in range(K):
                for v in range(K):
                    offset = u * Wp + v  # window of pixel (i, j) starts at padded (i+u, j+v)
                    chunk_out.addcmul_(chunk_in[..., offset:offset + length], chunk_kernel[:, :, u * K + v].unsqueeze(2))
        ctx.save_for_backward(padded, kernel)
        ctx.dims = (K, H, W)
        return out.view(B, C, H, Wp)[..., :W].to(dtype).contiguous()  # (B, C, H, W)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        padded, kernel = ctx.saved_tensors
        K, H, W = ctx.dims
        B, G, Cg, _ = padded.shape
        pad = K // 2
        Wp = W + 2 * pad
        length = H * Wp
        # zero in the dropped columns, so they send no gradient anywhere
        grad_out = F.pad(grad_out.to(padded.dtype), (0, 2 * pad)).reshape(B, G, Cg, length)  # (B, G, C/G, H*Wp)
        grad_padded = torch.zeros_like(padded)  # (B, G, C/G, Hp*Wp + 2p)
        grad_kernel = torch.empty_like(kernel)  # (B, G, K*K, H*Wp)
        for rows in _batch_chunks(B, G * Cg * length, padded.device):
            grad_o, grad_p, grad_k = grad_out[rows], grad_padded[rows], grad_kernel[rows]
            inputs, kernels = padded[rows], kernel[rows]
            product = torch.empty_like(grad_o)  # reused per offset
            for u in range(K):
                for v in range(K):
                    k, offset = u * K + v, u * Wp + v
                    # dL/dx at (i+u-p, j+v-p) += H_{i,j,k} dL/dY_{i,j}   (Eq. 4 read backwards)
                    grad_p[..., offset:offset + length].addcmul_(grad_o, kernels[:, :, k].unsqueeze(2))
                    # dL/dH_{i,j,k} = sum over the group's channels of dL/dY_{i,j} x_{i+u-p, j+v-p}
                    torch.mul(grad_o, inputs[..., offset:offset + length], out=product)
                    torch.sum(product, dim=2, out=grad_k[:, :, k])
        Hp = H + 2 * pad
        grad_x = grad_padded[..., :Hp * Wp].reshape(B, G * Cg, Hp, Wp)[..., pad:pad + H, pad:pad + W]  # (B, C, H, W)
        grad_kernel = grad_kernel.view(B, G, K * K, H, Wp)[..., :W]  # (B, G, K*K, H, W)
        return grad_x, grad_kernel


def involution(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Li et al. Eq. 4, fast forward and backward: ``x (B, C, H, W)``, ``kernel (B, G, K*K, H, W)`` -> ``(B, C, H, W)``.

    Same sum as :func:`involution_reference`; gradients for both inputs (first order only).
    Returns the dtype both inputs promote to (under autocast, bf16 kernels give bf16).
    """
    return _InvolutionFunction.apply(x, kernel)


INVOLUTION_INITS = ("rednet", "pytorch")


class Involution(nn.Module):
    """One involution layer (Li et al. 2021 Eq. 4 and 6): per-pixel kernels, applied by :func:`involution`.

    ``channels`` must be divisible by ``group_channels`` (16 in MBGN); the kernel
    generator reduces channels by ``reduction`` (4, as in Li et al.'s code) before
    spanning to ``K*K*G`` kernel values per pixel. ``reference=True`` uses
    :func:`involution_reference` instead (same result, slower; for tests and benchmarks).
    ``init``: ``"rednet"`` (:func:`rednet_init`, the official code's) or ``"pytorch"`` (PyTorch's
    default conv init, kaiming-uniform with a = sqrt(5): what this module used before).
    """

    def __init__(self, channels: int, kernel_size: int = 7, group_channels: int = 16, reduction: int = 4,
                 reference: bool = False, init: str = "rednet"):
        super().__init__()
        if init not in INVOLUTION_INITS:
            raise ValueError(f"Involution: init must be one of {INVOLUTION_INITS}, got {init!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"Involution: kernel_size must be odd, got {kernel_size}")
        if channels % group_channels != 0:
            raise ValueError(
                f"Involution: channels ({channels}) must be divisible by group_channels ({group_channels})"
            )
        self.channels = channels
        self.kernel_size = kernel_size
        self.groups = channels // group_channels
        self.reference = reference
        hidden = max(1, channels // reduction)
        # kernel generation function phi (Li et al. Eq. 6)
        self.reduce = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.span = nn.Conv2d(hidden, kernel_size * kernel_size * self.groups, 1)
        if init == "rednet":
            rednet_init(self)

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """The per-pixel kernels ``(B, G, K*K, H, W)`` generated from ``x``."""
        B, _, H, W = x.shape
        kernel = self.span(self.reduce(x))  # (B, G*K*K, H, W)
        return kernel.reshape(B, self.groups, self.kernel_size**2, H, W)  # (B, G, K*K, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"Involution: built for {self.channels} channels, got input with shape {tuple(x.shape)}")
        kernel = self.kernels(x)  # (B, G, K*K, H, W)
        apply = involution_reference if self.reference else involution
        return apply(x, kernel)  # (B, C, H, W)


def rednet_init(module: nn.Module) -> None:
    """RedNet's ``init_weights`` (d-li14/involution): Kaiming-normal fan_out (ReLU gain) for every
    conv with zero bias; BN weight 1, bias 0. (Its zero last BN of residual blocks: see the module docstring.)"""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class InvolutionBlock(nn.Module):
    """MBGN's Involution Block (Sec. 3.3, Fig. 2): two involution layers, each followed by BN.

    The paper names no activation between the two layers, so none is used.
    """

    def __init__(self, channels: int, kernel_size: int = 7, group_channels: int = 16, reference: bool = False,
                 init: str = "rednet"):
        super().__init__()
        self.inv1 = Involution(channels, kernel_size, group_channels, reference=reference, init=init)
        self.bn1 = nn.BatchNorm2d(channels)
        self.inv2 = Involution(channels, kernel_size, group_channels, reference=reference, init=init)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.inv2(self.bn1(self.inv1(x))))  # (B, C, H, W)
