"""Shared-prefix evaluation of the unperturbed and perturbed forward passes of PAG.

The perturbed pass differs from the normal one only from the first perturbed attention layer on;
everything computed before that layer is identical. ``SharedPrefix`` records, during the normal pass,
the outputs of the outermost modules that *finish* before the first perturbed layer *starts*, and
replays them in the perturbed pass, so the network skips that work. Functional code between modules
(a few elementwise ops) is recomputed; every module call is either replayed or run.

The plan (which modules to record) is found once per (network, layers, input shapes) by watching the
call order of all modules; later calls hook only the planned modules.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn
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


class SharedPrefix:
    """Record the prefix in the normal pass, replay it in the perturbed pass.

    Usage (``prior`` runs ``network``)::

        shared = SharedPrefix(network, layer_modules)
        with shared.record():
            out = prior(x_t, t)                 # normal pass, with autograd graph
        with torch.no_grad(), perturbed_self_attention(network, layers), shared.replay():
            out_perturbed = prior(x_t, t)       # skips everything before the first perturbed layer

    Both passes must get the same inputs. The replayed tensors are detached: the perturbed pass builds
    no graph into the prefix.
    """

    _plans: ClassVar[weakref.WeakKeyDictionary[nn.Module, dict[tuple, list[str]]]] = weakref.WeakKeyDictionary()

    def __init__(self, network: nn.Module, layer_modules: Sequence[nn.Module], key: tuple = ()):
        self.network = network
        self.layer_modules = list(layer_modules)
        names = {id(m): n for n, m in network.named_modules()}
        self.key = (tuple(names[id(m)] for m in self.layer_modules), *key)
        self.cache: dict[str, list[Any]] = {}

    @property
    def plan(self) -> list[str] | None:
        return self._plans.get(self.network, {}).get(self.key)

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
        hooks = [
            self.network.get_submodule(name).register_forward_hook(self._store(name, self.cache, None)) for name in plan
        ]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

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
        patched: list[tuple[nn.Module, Any]] = []
        try:
            for name in plan:
                module = self.network.get_submodule(name)
                queue = list(self.cache.get(name, []))
                previous = module.__dict__.get("forward")
                patched.append((module, previous))
                module.forward = self._replayer(queue, previous or type(module).forward.__get__(module))
            yield
        finally:
            for module, previous in patched:
                if previous is None:
                    del module.forward
                else:
                    module.forward = previous
            self.cache = {}

    @staticmethod
    def _replayer(queue: list[Any], original: Callable) -> Callable:
        def forward(*args, **kwargs):
            # calls made before the first perturbed layer are replayed in order; a module that is called
            # again after it (a shared activation, say) runs for real
            return queue.pop(0) if queue else original(*args, **kwargs)

        return forward
