"""The project: a tiny model, compiled with torch.compile."""

from __future__ import annotations

import torch


def scaled_sin(x: torch.Tensor) -> torch.Tensor:
    """The model: two operations, so that there is a forward and a backward graph."""
    return (x.sin() + 1) * 2


def train_step(x: torch.Tensor) -> torch.Tensor:
    """Compile the model, run it forward and backward; the gradient."""
    x = x.detach().requires_grad_(True)
    torch.compile(scaled_sin)(x).sum().backward()
    assert x.grad is not None
    return x.grad
