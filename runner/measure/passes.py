"""Network passes of a prior, counted with module hooks: what a restoration costs, free of timing noise."""

from __future__ import annotations

import torch
from torch.utils.hooks import RemovableHandle


class PassCounter:
    """Counts the forward calls of a prior's network and the backward passes through it, until ``remove()``.

    PAG's perturbed pass counts as a forward call even where it reuses the shared prefix (the network is still
    called; only its first blocks are replayed). A backward pass is counted when a gradient reaches the network's
    output tensor: a full backward hook on the module would not fire for networks that return a dataclass
    (diffusers' UNet2DConditionModel).

        with PassCounter(prior) as passes:
            solver.restore(y, generators)
        passes.forward, passes.backward
    """

    def __init__(self, prior):
        self.forward = self.backward = 0
        self._handle: RemovableHandle | None = prior.network.register_forward_hook(self._watch_output)

    def _watch_output(self, module, inputs, output) -> None:
        self.forward += 1
        eps = output if torch.is_tensor(output) else output[0]  # tensor, tuple or diffusers' BaseOutput
        if eps.requires_grad:
            eps.register_hook(self._count_backward)

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backward += 1

    def reset(self) -> None:
        self.forward = self.backward = 0

    def remove(self) -> None:
        """Stop counting (the hook is removed from the network)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> PassCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
