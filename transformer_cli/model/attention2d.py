"""Self-attention over an image feature map, as in SAGAN (Zhang et al. 2019), on tcli's core.

Every pixel of a (batch, C, H, W) map attends to all H*W pixels. Queries and keys are 1x1
convolutions down to C / reduction channels, values a 1x1 convolution to C channels, and the
attended values are added back to the input scaled by a learned gate gamma that starts at 0, so
the module is the identity until training opens the gate. One difference from the paper's code:
our `scaled_dot_product_attention` divides the scores by sqrt(C / reduction).
"""

import torch
from torch import Tensor, nn

from transformer_cli.model.attention import scaled_dot_product_attention


class SelfAttention2d(nn.Module):
    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inner, kernel_size=1)
        self.key = nn.Conv2d(channels, inner, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, C, H, W) -> output of the same shape and weights (batch, H*W, H*W)."""
        batch, channels, height, width = x.shape
        # (batch, C', H, W) -> (batch, H*W, C'): one row per pixel
        q = self.query(x).flatten(2).transpose(1, 2)
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2)
        attended, weights = scaled_dot_product_attention(q, k, v)  # (batch, H*W, C)
        attended = attended.transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.gamma * attended, weights
