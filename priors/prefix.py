"""Shared-prefix evaluation of the unperturbed and perturbed forward passes of PAG.

The perturbed pass differs from the normal one only from the first perturbed attention layer on;
everything computed before that layer is identical. ``SharedPrefix`` records, during the normal pass,
the outputs of the outermost modules that *finish* before the first perturbed layer *starts*, and
replays them in the perturbed pass, so the network skips that work. Functional code between modules
(a few elementwise ops) is recomputed; every module call is either replayed or run.

The plan (which modules to record) is found once per (network, layers, input shapes) by watching the
call order of all modules; later calls hook only the planned modules.

UNet decoders also consume the prefix after the perturbed layer: a decoder block gets ``cat([h, s])`` where the
skip ``s`` came from the encoder. When ``s`` was made in the prefix it is the same in both passes, and so is every
*linear* function of it: the block's input conv (after a GroupNorm whose groups hold only skip channels and an
elementwise activation) and its 1x1 shortcut conv split into an ``h`` part and an ``s`` part,
``W [h; s] = W_h h + W_s s``. The normal pass computes the two parts separately and keeps ``W_s s``; the
perturbed pass computes only ``W_h h`` and adds it back (``SkipBranch``: which blocks, named by the prior).
With PAG at the FFHQ ADM's ``input_blocks.9.1`` the prefix holds 20 % of a forward pass's FLOPs and the reused
skip parts another 16 %, so the perturbed pass does 64 % of a full pass's work and a DPS step grows 1.32x instead
of 1.50x in FLOPs (``scripts/benchmark.py --only ffhq_adm``, FLOP column).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def _detach(value: Any) -> Any:
    """Detach every tensor inside nested tuples / lists / dicts (diffusers blocks return tuples)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_detach(v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(_detach(v) for v in value)
    if isinstance(value, dict):
        out = value.copy()
        for k, v in value.items():
            out[k] = _detach(v)
        return out
    return value


class _PlanRecorder:
    """Watches one forward pass and finds the outermost module calls completed before the first
    perturbed layer starts."""

    def __init__(self, network: nn.Module, layer_modules: Sequence[nn.Module]):
        self.network = network
        self.layer_ids = {id(m) for m in layer_modules}
        self.clock = 0
        self.stopped = False
        self.open: dict[int, list[tuple[str, int]]] = {}
        self.completed: list[tuple[str, int, int]] = []  # (name, start, end), outermost only
        self.handles: list[RemovableHandle] = []
        for name, module in network.named_modules():
            if module is network:
                continue
            self.handles.append(module.register_forward_pre_hook(self._pre(name, module)))
            self.handles.append(module.register_forward_hook(self._post(name, module)))

    def _pre(self, name: str, module: nn.Module) -> Callable:
        def hook(mod, args):
            if self.stopped:
                return
            if id(mod) in self.layer_ids:
                self.stopped = True
                return
            self.clock += 1
            self.open.setdefault(id(mod), []).append((name, self.clock))

        return hook

    def _post(self, name: str, module: nn.Module) -> Callable:
        def hook(mod, args, output):
            if self.stopped:
                return
            stack = self.open.get(id(mod))
            if not stack:
                return
            name_, start = stack.pop()
            self.clock += 1
            # anything recorded since this call started is nested inside it: keep only the outermost
            while self.completed and self.completed[-1][1] > start:
                self.completed.pop()
            self.completed.append((name_, start, self.clock))

        return hook

    def remove(self) -> list[str]:
        for h in self.handles:
            h.remove()
        if not self.stopped:
            raise RuntimeError("none of the perturbed layers ran during the forward pass")
        return [name for name, _, _ in self.completed]


@dataclass(frozen=True)
class SkipBranch:
    """A decoder block fed ``cat([h, s], dim=1)`` whose skip ``s`` (the trailing channels) is ``source``'s output.

    The block applies ``norm`` (a GroupNorm over all channels), an elementwise activation and ``conv`` to its
    input, and ``shortcut`` (a conv, or None for an identity shortcut) to the raw input; module paths are relative
    to the network. ``live``: the number of leading channels (h). ``upcast_norm``: the norm computes in float32 and
    casts back, parameters included (ADM's ``GroupNorm32``).
    """

    source: str
    norm: str
    conv: str
    shortcut: str | None
    live: int
    upcast_norm: bool = False


def _in_prefix(name: str, prefix: Collection[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefix)


@contextmanager
def _patched_forward(module: nn.Module, forward: Callable) -> Iterator[None]:
    previous = module.__dict__.get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if previous is None:
            del module.forward
        else:
            module.forward = previous


class _SkipSplit:
    """One ``SkipBranch`` at run time: the normal pass keeps the skip parts ``W_s s`` of ``conv`` and ``shortcut``,
    the perturbed pass computes only the ``h`` parts and adds them back.

    GroupNorm groups that hold both h and s channels normalise s with statistics of h, so the conv's reused part
    starts at the first group boundary at or after ``live`` (``boundary``); the shortcut sees the raw input and
    reuses every skip channel.
    """

    def __init__(self, network: nn.Module, branch: SkipBranch):
        self.branch = branch
        self.norm = network.get_submodule(branch.norm)
        self.conv = network.get_submodule(branch.conv)
        self.shortcut = network.get_submodule(branch.shortcut) if branch.shortcut else None
        channels = self.conv.in_channels
        if not isinstance(self.norm, nn.GroupNorm) or self.norm.num_channels != channels:
            raise ValueError(f"{branch.norm} must be a GroupNorm over the {channels} input channels of {branch.conv}")
        for conv in (self.conv, self.shortcut):
            if conv is not None and (conv.groups != 1 or conv.in_channels != channels):
                raise ValueError(f"skip sharing needs dense convs over all {channels} input channels ({branch})")
        if not 0 < branch.live < channels:
            raise ValueError(f"live channels {branch.live} must lie in (0, {channels}) ({branch})")
        group = channels // self.norm.num_groups
        self.boundary = -(-branch.live // group) * group
        self.split_conv = self.boundary < channels
        self.conv_parts: list[Tensor] = []
        self.shortcut_parts: list[Tensor] = []

    def clear(self) -> None:
        self.conv_parts, self.shortcut_parts = [], []

    @property
    def recorded(self) -> bool:
        return bool(self.conv_parts or self.shortcut_parts)

    # The sums are in place (a conv's backward does not need its output): no third activation-sized tensor per
    # block, which on a CPU with glibc's allocator costs page faults at 256 px.
    @staticmethod
    def _split(conv: nn.Module, x: Tensor, at: int, keep: list[Tensor]) -> Tensor:
        skip_part = conv._conv_forward(x[:, at:], conv.weight[:, at:], None)
        keep.append(skip_part.detach())
        return conv._conv_forward(x[:, :at], conv.weight[:, :at], conv.bias).add_(skip_part)

    @staticmethod
    def _reuse(conv: nn.Module, x: Tensor, at: int, kept: list[Tensor], what: str) -> Tensor:
        if not kept:
            raise RuntimeError(f"{what} ran more often in the perturbed pass than in the recorded normal pass")
        return conv._conv_forward(x[:, :at], conv.weight[:, :at], conv.bias).add_(kept.pop(0))

    def _live_norm(self, x: Tensor) -> Tensor:
        """The norm of the channels before ``boundary`` only (whole groups: the same numbers as the full norm)."""
        norm, at = self.norm, self.boundary
        groups = norm.num_groups * at // norm.num_channels
        weight = norm.weight[:at] if norm.weight is not None else None
        bias = norm.bias[:at] if norm.bias is not None else None
        if self.branch.upcast_norm:
            weight, bias = (p.float() if p is not None else None for p in (weight, bias))
            return F.group_norm(x[:, :at].float(), groups, weight, bias, norm.eps).to(x.dtype)
        return F.group_norm(x[:, :at], groups, weight, bias, norm.eps)

    def record(self, stack: ExitStack) -> None:
        self.clear()
        if self.split_conv:
            stack.enter_context(
                _patched_forward(self.conv, lambda z: self._split(self.conv, z, self.boundary, self.conv_parts))
            )
        if self.shortcut is not None:
            sc = self.shortcut
            stack.enter_context(
                _patched_forward(sc, lambda x: self._split(sc, x, self.branch.live, self.shortcut_parts))
            )

    def _reuse_conv(self, z: Tensor) -> Tensor:
        if z.shape[1] != self.boundary:  # something between norm and conv changed the channels
            raise RuntimeError(
                f"{self.branch.conv} got {z.shape[1]} channels from {self.branch.norm}, not {self.boundary}"
            )
        return self._reuse(self.conv, z, self.boundary, self.conv_parts, self.branch.conv)

    def replay(self, stack: ExitStack) -> None:
        if self.split_conv:
            stack.enter_context(_patched_forward(self.norm, self._live_norm))
            stack.enter_context(_patched_forward(self.conv, self._reuse_conv))
        if self.shortcut is not None:
            sc, live, name = self.shortcut, self.branch.live, str(self.branch.shortcut)
            stack.enter_context(_patched_forward(sc, lambda x: self._reuse(sc, x, live, self.shortcut_parts, name)))


class SharedPrefix:
    """Record the prefix in the normal pass, replay it in the perturbed pass.

    Usage (``prior`` runs ``network``)::

        shared = SharedPrefix(network, layer_modules, skip_branches=prior.skip_branches())
        with shared.record():
            out = prior(x_t, t)                 # normal pass, with autograd graph
        with torch.no_grad(), perturbed_self_attention(network, layers), shared.replay():
            out_perturbed = prior(x_t, t)       # skips everything before the first perturbed layer

    Both passes must get the same inputs. The replayed tensors are detached: the perturbed pass builds
    no graph into the prefix. ``skip_branches``: the decoder blocks whose skip parts may be reused (the ones whose
    skip comes from the prefix are); they are split from the second recorded pass on (the first finds the prefix).
    Splitting a conv changes the normal pass's output by float rounding only.
    """

    _plans: ClassVar[weakref.WeakKeyDictionary[nn.Module, dict[tuple, list[str]]]] = weakref.WeakKeyDictionary()

    def __init__(
        self,
        network: nn.Module,
        layer_modules: Sequence[nn.Module],
        key: tuple = (),
        skip_branches: Sequence[SkipBranch] = (),
    ):
        self.network = network
        self.layer_modules = list(layer_modules)
        names = {id(m): n for n, m in network.named_modules()}
        self.key = (tuple(names[id(m)] for m in self.layer_modules), *key)
        self.cache: dict[str, list[Any]] = {}
        self.skip_branches = tuple(skip_branches)
        self._splits: list[_SkipSplit] | None = None

    @property
    def plan(self) -> list[str] | None:
        return self._plans.get(self.network, {}).get(self.key)

    @property
    def shared_skips(self) -> list[SkipBranch]:
        """The skip branches reused in the perturbed pass (known once the prefix is)."""
        return [split.branch for split in self._splits or []]

    def _skip_splits(self, plan: list[str]) -> list[_SkipSplit]:
        if self._splits is None:
            # the skip must come from the prefix; a block inside the prefix is replayed whole
            self._splits = [
                _SkipSplit(self.network, b)
                for b in self.skip_branches
                if _in_prefix(b.source, plan) and not _in_prefix(b.conv, plan)
            ]
        return self._splits

    @contextmanager
    def record(self) -> Iterator[None]:
        self.cache = {}
        plan = self.plan
        if plan is None:
            recorder = _PlanRecorder(self.network, self.layer_modules)
            hooks: list[RemovableHandle] = []
            # record every module's output, keep only those in the final plan
            outputs: dict[str, list[Any]] = {}
            for name, module in self.network.named_modules():
                if module is not self.network:
                    hooks.append(module.register_forward_hook(self._store(name, outputs, recorder)))
            try:
                yield
            finally:
                for h in hooks:
                    h.remove()
                plan = recorder.remove()
            self._plans.setdefault(self.network, {})[self.key] = plan
            self.cache = {name: outputs[name] for name in plan}
            return
        with ExitStack() as stack:
            for name in plan:
                hook = self.network.get_submodule(name).register_forward_hook(self._store(name, self.cache, None))
                stack.callback(hook.remove)
            for split in self._skip_splits(plan):
                split.record(stack)
            yield

    @staticmethod
    def _store(name: str, into: dict[str, list[Any]], recorder: _PlanRecorder | None) -> Callable:
        def hook(module, args, output):
            if recorder is not None and recorder.stopped:
                return
            into.setdefault(name, []).append(_detach(output))

        return hook

    @contextmanager
    def replay(self) -> Iterator[None]:
        plan = self.plan
        if plan is None:
            raise RuntimeError("SharedPrefix.replay() needs a recorded normal pass first")
        try:
            with ExitStack() as stack:
                for name in plan:
                    module = self.network.get_submodule(name)
                    original = module.__dict__.get("forward") or type(module).forward.__get__(module)
                    replayer = self._replayer(list(self.cache.get(name, [])), original)
                    stack.enter_context(_patched_forward(module, replayer))
                for split in self._splits or []:
                    if split.recorded:
                        split.replay(stack)
                yield
        finally:
            self.cache = {}
            for split in self._splits or []:
                split.clear()

    @staticmethod
    def _replayer(queue: list[Any], original: Callable) -> Callable:
        def forward(*args, **kwargs):
            # calls made before the first perturbed layer are replayed in order; a module that is called
            # again after it (a shared activation, say) runs for real
            return queue.pop(0) if queue else original(*args, **kwargs)

        return forward
