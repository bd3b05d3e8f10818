"""A group's linear-layer products: batched only in a form that gives each job alone's bits;
and a batched sweep leaves torch's compiler unloaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from pipeline.core import products
from pipeline.core.data import toy
from pipeline.core.products import Kernels

TOY = toy().train.features  # 8 samples x 4 features


def stacks(jobs: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(jobs, 3, 4, generator=generator)
    bias = torch.randn(jobs, 3, generator=generator)
    grad = torch.randn(jobs, 8, 3, generator=generator) / 8
    return TOY.expand(jobs, -1, -1), weight, bias, grad


def an_ulp_off(x, weight, bias):
    return torch.nextafter(products.output_alone(x, weight, bias), torch.tensor(float("inf")))


def test_a_product_takes_the_first_form_that_gives_a_job_alones_bits():
    kernels, (x, weight, bias, _) = Kernels(), stacks(5, seed=0)
    first = kernels.compute(
        products.output_alone, (an_ulp_off, products.output_alone), x, weight, bias
    )
    assert torch.equal(first, products.output_alone(x, weight, bias))
    [chosen] = kernels.chosen.values()
    assert chosen is products.output_alone  # the form an ulp off was refused


def test_a_form_right_only_on_the_first_calls_numbers_is_refused():
    kernels, (x, weight, bias, _) = Kernels(), stacks(2, seed=0)
    seen = products.output_alone(x, weight, bias)

    def memorized(x_, weight_, bias_):  # right for the first call's numbers only
        return seen if torch.equal(weight_, weight) else an_ulp_off(x_, weight_, bias_)

    kernels.compute(products.output_alone, (memorized,), x, weight, bias)
    assert list(kernels.chosen.values()) == [None]  # job by job from now on
    _, other_weight, other_bias, _ = stacks(2, seed=1)
    later = kernels.compute(products.output_alone, (memorized,), x, other_weight, other_bias)
    assert torch.equal(later, products.output_alone(x, other_weight, other_bias))


AVX512 = torch.backends.cpu.get_cpu_capability() == "AVX512" and torch.backends.mkl.is_available()


def test_the_toy_sets_products_run_batched_with_a_job_alones_bits():
    """On an AVX-512 CPU with MKL (this machine's) the default run's products have batched forms;
    wherever a form is chosen, it gives alone's bits on stacks it was not checked on."""
    kernels, (x, weight, bias, grad) = Kernels(), stacks(1000, seed=0)
    output = (products.output_alone, (products.output_batched, products.output_in_halves))
    grad_weight = (
        products.grad_weight_alone,
        (products.grad_weight_batched, products.grad_weight_chained),
    )
    kernels.compute(*output, x, weight, bias)
    kernels.compute(*grad_weight, x, grad)
    chosen = {key[0].__name__: form for key, form in kernels.chosen.items()}
    if AVX512:
        assert chosen == {
            "output_alone": products.output_in_halves,
            "grad_weight_alone": products.grad_weight_chained,
        }
    for seed in range(1, 6):
        x, weight, bias, grad = stacks(1000, seed)
        assert torch.equal(
            kernels.compute(*output, x, weight, bias), products.output_alone(x, weight, bias)
        )
        assert torch.equal(
            kernels.compute(*grad_weight, x, grad), products.grad_weight_alone(x, grad)
        )


SWEEP_WITHOUT_COMPILER = """
import json, sys, torch
import pipeline
pipeline.sweep("optim.lr=0.01,0.1", "seed=1,2", "epochs=3", *sys.argv[1:])
loaded = "torch._dynamo" in sys.modules
optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
optimizer.zero_grad()
state = optimizer.state_dict()
import torch._dynamo
optimizer.load_state_dict(state)  # now through torch's own disabled method
disabled = torch.optim.Optimizer.load_state_dict.__wrapped__.__dynamo_disable
deterministic = torch.are_deterministic_algorithms_enabled()
after = disabled.__module__
print(json.dumps({"compiler": loaded, "deterministic": deterministic, "after": after}))
"""


@pytest.mark.slow  # a fresh interpreter (~6 s)
def test_a_batched_sweep_leaves_torchs_compiler_unloaded(tmp_path):
    """Importing TorchDynamo costs 1-2 s a process; a batched sweep updates its jobs with
    torch.optim's functions and never needs it, and what it changed behaves as torch's own
    once the compiler is loaded."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SWEEP_WITHOUT_COMPILER, f"tracking.uri={uri}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert (found["compiler"], found["deterministic"]) == (False, True)
    assert found["after"].startswith("torch._dynamo")  # torch's own disabled method now
