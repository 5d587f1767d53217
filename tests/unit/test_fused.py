"""Fused point-wise kernels (worker.effects.fused): compiled by torch.compile's C++ backend on a
background thread, used only for the shape class they were compiled and checked for, eager otherwise.

These tests run the real compiler (gcc, as on the machine's image); a compile takes ~0.3-3 s with a
warm inductor cache and ~10 s for the first one of a process, so the module is marked slow.
"""

from __future__ import annotations

import logging

import pytest
import torch

from darkroom.apps.params import GROUPS_BY_NAME
from darkroom.settings import Settings
from worker.context import start_fused_effects
from worker.effects import filters, fused, warmup
from worker.effects.chain import run_chain

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WAIT_S = 300


@pytest.fixture(autouse=True)
def fusing():
    fused.enable()
    yield
    fused.wait(WAIT_S)
    fused.enable(False)


def _scale_clamp(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return (x * a).add_(0.25).clamp_(0, 1)


def _branchy(x: torch.Tensor) -> torch.Tensor:
    if x.sum() > 0:  # data-dependent Python: no full graph
        return x * 2
    return x


def test_disabled_or_outside_inference_mode_runs_eagerly_and_compiles_nothing():
    k = fused.Kernel(_scale_clamp)
    x, a = torch.rand(2, 3, 8, 8), torch.full((2, 1, 1, 1), 0.5)
    fused.enable(False)
    with torch.inference_mode():
        assert torch.equal(k(x, a), _scale_clamp(x, a))
    fused.enable()
    assert torch.equal(k(x, a), _scale_clamp(x, a))  # grad mode: never compiled
    assert k.states == {}


def test_shape_class_refuses_what_compiled_code_was_not_built_for():
    x = torch.rand(2, 3, 8, 8)
    threads = torch.get_num_threads()
    assert fused.shape_class((x, torch.rand(2, 1, 1, 1))) == (
        threads, (False, False, False, False, False), (False, False, True, True, True)
    )
    with torch.inference_mode():
        assert fused.shape_class((torch.rand(1, 3, 8, 8),)) == (threads, (True, True, False, False, False))
    assert fused.shape_class((x[..., ::2],)) is None  # not contiguous
    assert fused.shape_class((x.double(),)) is None
    assert fused.shape_class((x.to(torch.uint8),)) is None
    assert fused.shape_class((torch.rand(0, 3, 8, 8),)) is None
    assert fused.shape_class((x, 0.5)) is None  # numbers would be baked into the compiled code
    assert fused.shape_class((torch.rand(2, 3, 8, 8, requires_grad=True),)) is None


def test_a_kernel_compiles_once_per_class_and_then_matches_eager_for_any_size():
    k = fused.Kernel(_scale_clamp)
    with torch.inference_mode():
        x, a = torch.rand(2, 3, 16, 24), torch.rand(2, 1, 1, 1)
        assert k.try_compiled(x, a) is None  # queued, this call eager
        assert fused.wait(WAIT_S)
        cls = fused.shape_class((x, a))
        assert k.states == {cls: fused.READY}
        for b, h, w in ((2, 16, 24), (5, 33, 7), (3, 2, 90)):  # any size of the class, no recompile
            x, a = torch.rand(b, 3, h, w), torch.rand(b, 1, 1, 1)
            out = k.try_compiled(x, a)
            assert out is not None and torch.allclose(out, _scale_clamp(x, a), atol=1e-6, rtol=0)
        one = (torch.rand(1, 3, 16, 24), torch.rand(1, 1, 1, 1))
        assert k.try_compiled(*one) is None  # a batch of one is its own class
        assert fused.wait(WAIT_S)
        assert k.states[fused.shape_class(one)] == fused.READY
        assert torch.allclose(k(*one), _scale_clamp(*one), atol=1e-6, rtol=0)


def test_a_kernel_the_compiler_refuses_stays_eager_and_says_why(caplog):
    k = fused.Kernel(_branchy, name="branchy")
    x = torch.rand(2, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="worker.effects.fused"), torch.inference_mode():
        assert torch.equal(k(x), x * 2)
        assert fused.wait(WAIT_S)
        assert list(k.states.values()) == [fused.FAILED]
        assert torch.equal(k(x), x * 2)  # still answered, eagerly
    assert "branchy stays eager" in caplog.text


# ---- the effects ----------------------------------------------------------------------------------


def _variants() -> list[list[tuple[str, object]]]:
    """Chains reaching every fused kernel: the worker's sample request, then the variants it leaves out
    (other dodge & burn modes, tone-weighted grain, a partial colour correction)."""
    sample = warmup.sample_chain()
    params = GROUPS_BY_NAME

    def one(name: str, **values):
        return [(name, params[name].params(**values))]

    chains = [sample]
    chains += [one("dodge_burn", dodge_burn_mode=m, dodge_burn_intensity=0.7)
               for m in ("burn", "dodge_and_burn", "burn_and_dodge", "color_dodge", "color_burn",
                         "linear_dodge", "linear_burn")]
    chains += [one("grain", grain_style=s, grain_intensity=0.5) for s in ("kodak", "cinematic", "newspaper")]
    chains += [one("color_correction", gamma=0.6, saturation=-40)]
    return chains


def test_every_fused_effect_matches_its_eager_code():
    g = torch.Generator().manual_seed(3)
    for i, chain in enumerate(_variants()):
        for b in (2, 1) if i == 0 else (2,):  # the sample request in both classes, the variants in one
            x = torch.rand((b, 3, 20, 28), generator=g)
            images = {"dissolve": torch.rand((b, 3, 20, 28), generator=g)}
            with torch.inference_mode():
                fused.enable(False)
                want = run_chain(x, [chain] * b, list(range(b)), images)
                fused.enable()
                run_chain(x, [chain] * b, list(range(b)), images)  # queues the compiles
                assert fused.wait(WAIT_S)
                got = run_chain(x, [chain] * b, list(range(b)), images)
            assert (got - want).abs().max().item() <= 1e-5, [name for name, _ in chain]


def test_every_pointwise_effect_reaches_a_compiled_kernel():
    """The sample request compiles a kernel for each fused effect, and none of them failed."""
    kernels: list[fused.Kernel] = []
    original = fused.Kernel.try_compiled

    def spy(self, *args):
        kernels.append(self)
        return original(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused.Kernel, "try_compiled", spy)
        warmup.prime(torch.device("cpu"))
        assert fused.wait(WAIT_S)
    names = {k.name for k in kernels}
    for effect in ("color_correction", "dodge_burn", "tint", "dissolve", "vignette", "parabolize",
                   "solarize", "desaturate", "glow", "grain", "sharpen", "separable"):
        assert any(effect in name for name in names), effect
    assert all(state == fused.READY for k in kernels for state in k.states.values())


def test_separable_filters_compile_per_tap_count_and_match_eager():
    """Gaussian blurs (blur, glow) run both 1-D passes as one compiled kernel per tap count; a
    channels-last input keeps the eager path and its layout."""
    g = torch.Generator().manual_seed(5)
    for radius in (1, 3, 8):
        taps = filters.node_gaussian_taps(radius, 0.7)
        for b in (1, 2):
            x = torch.rand((b, 3, 20, 28), generator=g)
            with torch.inference_mode():
                fused.enable(False)
                want = filters.filter_separable(x, taps)
                fused.enable()
                filters.filter_separable(x, taps)  # queues the compile
                assert fused.wait(WAIT_S)
                got = filters.filter_separable(x, taps)
            assert got.shape == x.shape and got.is_contiguous()
            assert (got - want).abs().max().item() <= 1e-6, (radius, b)
        kernel = filters.separable(len(taps))
        assert set(kernel.states.values()) == {fused.READY} and len(kernel.states) == 2  # B = 1, B > 1
    x = torch.rand((2, 3, 20, 28), generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = filters.filter_separable(x, filters.node_gaussian_taps(3, 0.7))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert len(filters.separable(7).states) == 2  # no class was added for it


def test_sample_request_leaves_no_step_neutral():
    cc = dict(warmup.sample_chain())["color_correction"]
    assert (cc.brightness, cc.contrast, cc.temperature, cc.saturation) != (0, 0, 0, 0)
    assert 0 not in (cc.brightness, cc.contrast, cc.temperature, cc.saturation) and cc.gamma != 1


def test_worker_start_enables_fusing_on_the_cpu_only(tmp_path):
    fused.enable(False)
    settings = Settings(worker_fuse_effects=True, worker_fuse_wait_s=WAIT_S, local_storage_dir=tmp_path)
    start_fused_effects(settings, torch.device("cuda"))
    assert not fused.enabled()  # CUDA stays eager (inductor would need Triton)
    start_fused_effects(settings.model_copy(update={"worker_fuse_effects": False}), torch.device("cpu"))
    assert not fused.enabled()
    start_fused_effects(settings, torch.device("cpu"))  # waits for the sample request's kernels
    assert fused.enabled()
    assert fused.wait(0)


def _blend(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * 0.25 + y * 0.75).clamp_(0, 1)


def test_inputs_the_guards_refuse_go_eager_without_compiling_in_the_caller(caplog):
    k = fused.Kernel(_blend, name="blend")
    with torch.inference_mode():
        x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
        k(x, y)
        assert fused.wait(WAIT_S)
        assert torch.allclose(k(x, y), _blend(x, y), atol=1e-6, rtol=0)
        with caplog.at_level(logging.WARNING, logger="worker.effects.fused"):
            # the same tensor twice: its class is ready, but dynamo guards on aliasing
            assert torch.allclose(k(x, x), _blend(x, x), atol=1e-6, rtol=0)
        assert k.states[fused.shape_class((x, x))] == fused.FAILED
        assert torch.allclose(k(x, y), _blend(x, y), atol=1e-6, rtol=0)  # answered eagerly from now on
    assert "blend goes eager" in caplog.text


def test_a_thread_count_is_its_own_class(tmp_path):
    """Dynamo guards on the calling thread's torch thread count: code is compiled for each count seen."""
    k = fused.Kernel(_scale_clamp)
    before = torch.get_num_threads()
    x, a = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 1, 1)
    try:
        with torch.inference_mode():
            for threads in (1, 2, 1):
                torch.set_num_threads(threads)
                k(x, a)
                assert fused.wait(WAIT_S)
                out = k.try_compiled(x, a)
                assert out is not None and torch.allclose(out, _scale_clamp(x, a), atol=1e-6, rtol=0)
    finally:
        torch.set_num_threads(before)
    assert sorted(cls[0] for cls in k.states) == [1, 2]
    assert set(k.states.values()) == {fused.READY}


def test_with_a_wait_the_first_call_of_a_class_waits_for_its_compile():
    k = fused.Kernel(_blend, name="blend-wait")
    fused.enable(wait_s=WAIT_S)
    with torch.inference_mode():
        x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
        out = k.try_compiled(x, y)  # no eager answer: this call waited
    assert out is not None and torch.allclose(out, _blend(x, y), atol=1e-6, rtol=0)
    assert list(k.states.values()) == [fused.READY]


def test_compiled_kernels_run_without_the_gil():
    """Inductor's binding calls the kernel after parsing its arguments, with the GIL released (a worker's
    other slots keep decoding and encoding meanwhile, as with eager torch operations)."""
    from torch._inductor import codecache

    k = fused.Kernel(_blend, name="blend-nogil")
    fused.enable(wait_s=WAIT_S)
    with torch.inference_mode():
        x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
        out = k.try_compiled(x, y)
    assert out is not None and torch.allclose(out, _blend(x, y), atol=1e-6, rtol=0)
    call = codecache.CppPythonBindingsCodeCache.call_entry_function
    assert call == fused._KERNEL_CALL_RELEASING_GIL and "PyEval_SaveThread" in call
