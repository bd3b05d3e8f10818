"""TorchDynamo, torch's compiler, left unloaded by the parts that compile nothing.

Importing ``torch._dynamo`` takes 1-2 s a process here, about as long as importing torch. The
pipeline compiles nothing, but torch loads the compiler the first time a process calls
``torch.use_deterministic_algorithms`` (to set the compiler's own flag) or an ``Optimizer``
method wrapped in ``torch._disable_dynamo`` (``add_param_group``, which every optimizer's
constructor calls; ``state_dict``, ``load_state_dict``, ``zero_grad``). A run alone loads it
anyway (``Optimizer.step`` does, each step); a batched sweep updates its jobs with
``torch.optim``'s functions and need not.

Both do what torch does where the compiler is loaded; where it is not, nothing can be compiled,
so nothing is to be disabled for it, and inductor takes its deterministic flag from the
environment when it loads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch

DISABLED_METHODS = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")


def enable_deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True)``, without loading the compiler for it: the
    kernels' flag is set; inductor's is set where inductor is loaded, else by the environment
    variable it reads its default from when it loads (``TORCHINDUCTOR_DETERMINISTIC``)."""
    torch._C._set_deterministic_algorithms(True, warn_only=False)
    os.environ.setdefault("TORCHINDUCTOR_DETERMINISTIC", "1")
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = True


def optimizers_without_compiler() -> None:
    """``Optimizer``'s dynamo-disabled methods load the compiler only once something else has.

    ``torch._disable_dynamo`` keeps the disabled function in the wrapped function's
    ``__dynamo_disable`` once made, importing the compiler to make it; here it is given, ahead,
    one that makes torch's own when the compiler is loaded and calls the method plainly until
    then. Where torch's wrapper is not the one this knows (its closure ``fn``, ``recursive``),
    this changes nothing.
    """
    for name in DISABLED_METHODS:
        wrapper = getattr(torch.optim.Optimizer, name)
        code = getattr(wrapper, "__code__", None)
        if code is None or code.co_filename != torch._compile.__file__:
            continue  # not (or no longer) torch's _disable_dynamo wrapper
        if code.co_freevars != ("fn", "recursive"):
            continue
        method, recursive = (cell.cell_contents for cell in wrapper.__closure__)
        if getattr(method, "__dynamo_disable", None) is None:
            method.__dynamo_disable = _disabled_once_loaded(method, recursive)


def _disabled_once_loaded(method: Callable, recursive: bool) -> Callable:
    def call(*args, **kwargs):
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is None:
            return method(*args, **kwargs)
        disabled = dynamo.disable(method, recursive, wrapping=False)
        method.__dynamo_disable = disabled  # what torch would have kept
        return disabled(*args, **kwargs)

    return call
