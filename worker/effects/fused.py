"""Point-wise kernels fused into one loop by torch.compile's C++ backend, compiled off the request path.

A point-wise effect written as torch operations makes one pass over the image per operation. A
function wrapped by :func:`kernel` runs as written (eagerly) until this process has compiled it for the
call's *shape class*; from then on calls of that class run the compiled code, where inductor has fused
the operations into one or two loops over the image.

* **Off the request path.** The first call of a class queues a compile on one background thread (with
  clones of that call's inputs) and runs eagerly; no request waits for a compiler. Each compiled class
  is checked once against the eager result (:data:`TOLERANCE`) before it is used.
* **Shape classes.** Dynamo specialises sizes 0 and 1 and treats every other size as a symbol (duck
  sizing is turned off, so two sizes that happen to be equal are not assumed equal): one compile serves
  every image and batch size of its class. A class is the calling thread's torch thread count, and per
  argument whether it is an inference tensor and which of its sizes are 1 (a batch of one is its own
  class): what dynamo's guards check.
* **Where compiled code runs.** Under inference mode (as workers run effects), on contiguous float32
  CPU tensors: the conditions it was compiled under. Everything else runs eagerly. CUDA stays eager
  (inductor would need Triton, which the GPU extra does not install).
* **Needs** a C++ compiler and Python's headers, as inductor's CPU backend does. Where compiling
  fails, the kernel stays eager for that class and the reason is logged once.

Off unless :func:`enable` is called (workers do, per ``DARKROOM_WORKER_FUSE_EFFECTS``), so tests and
library users get the eager code unless they ask. Compiled code is cached on disk by inductor
(``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``): a restarted worker takes about
0.2-2 s per class from it, after a few seconds for the compiler's first use in the process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest |compiled - eager| accepted when a class is checked after compiling
PENDING, READY, FAILED = "pending", "ready", "failed"

_enabled = False
_wait_s = 0.0
_jobs: queue.Queue = queue.Queue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def enable(on: bool = True, wait_s: float = 0.0) -> None:
    """Let kernels run compiled code (and queue compiles); ``False`` makes every call eager again.
    ``wait_s`` > 0: a call whose class is still compiling waits up to that long for it instead of
    running eagerly (benchmarks measuring steady state; workers by ``DARKROOM_WORKER_FUSE_WAIT_S``).

    While enabled, dynamo may not recompile outside the compile thread: a call whose guards fail (an
    input unlike the class it was compiled for) raises there, and the kernel falls back to eager for
    that class instead of stalling the request on a compiler."""
    global _enabled, _wait_s
    _enabled, _wait_s = on, wait_s
    if on or "torch._dynamo" in sys.modules:
        from torch._dynamo import config as dynamo_config

        dynamo_config.error_on_recompile = on


def enabled() -> bool:
    return _enabled


def wait(timeout_s: float | None = None) -> bool:
    """Block until every queued compile has finished (benchmarks, tests); False if it timed out."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while _jobs.unfinished_tasks:
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def shape_class(args: tuple) -> tuple | None:
    """The call's shape class, or None where compiled code must not run (see the module docstring)."""
    cls = []
    for t in args:
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.device.type != "cpu":
            return None
        if t.requires_grad or not t.is_contiguous() or t.numel() == 0:
            return None
        cls.append((t.is_inference(), *(size == 1 for size in t.shape)))
    return (torch.get_num_threads(), *cls)  # the code is built for the calling thread's thread count


def _clone(t: torch.Tensor) -> torch.Tensor:
    """A copy that is an inference tensor exactly when ``t`` is one (dynamo guards on it)."""
    if t.is_inference():
        return t.clone()
    with torch.inference_mode(False):
        return t.clone()


class Kernel:
    """A pure function of float32 tensors returning one tensor, compiled per shape class."""

    def __init__(self, fn: Callable[..., torch.Tensor], name: str | None = None):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.states: dict[tuple, str] = {}
        self._compiled: Callable[..., torch.Tensor] | None = None

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.try_compiled(*args)
        return out if out is not None else self.fn(*args)

    def try_compiled(self, *args: torch.Tensor) -> torch.Tensor | None:
        """The compiled code's result if these arguments' class is compiled, else None and the caller
        runs eager code (the first call of a class queues its compile, when compiling is enabled)."""
        if not _enabled or not torch.is_inference_mode_enabled():
            return None
        cls = shape_class(args)
        state = self.states.get(cls) if cls is not None else FAILED
        if state is None:
            state = self.states[cls] = PENDING
            _submit(self, cls, tuple(_clone(t) for t in args))
        if state == PENDING and _wait_s > 0:
            state = self._await(cls, _wait_s)
        if state != READY:
            return None
        from torch._dynamo.exc import RecompileError

        try:
            return self._compiled(*args)
        except RecompileError as exc:  # the guards refused these inputs: this class goes eager
            self.states[cls] = FAILED
            reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            log.warning("fused kernel %s goes eager for class %s: %s", self.name, cls, reason)
            return None

    def _await(self, cls: tuple, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while self.states.get(cls) == PENDING and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.states[cls]

    def compile_class(self, cls: tuple, args: tuple[torch.Tensor, ...]) -> None:
        """Compile for ``cls`` with ``args`` and check the result against the eager function (runs on
        the compile thread)."""
        t0 = time.perf_counter()
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
            torch.set_num_threads(cls[0])  # the caller's (dynamo guards on it)
            with torch.inference_mode(), _compile_config():
                want = self.fn(*(_clone(t) for t in args))  # a kernel may work in an argument it owns
                got = self._compiled(*args)
            diff = (got - want).abs().max().item() if want.numel() else 0.0
            if not diff <= TOLERANCE:
                raise ValueError(f"compiled result differs from eager by {diff:.3g} (> {TOLERANCE})")
        except Exception as exc:  # noqa: BLE001 - any compiler failure leaves the class eager
            self.states[cls] = FAILED
            log.warning("fused kernel %s stays eager for class %s: %s", self.name, cls, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            return
        self.states[cls] = READY
        log.info("fused kernel %s compiled for class %s in %.1f s", self.name, cls, time.perf_counter() - t0)


def kernel(fn: Callable[..., torch.Tensor]) -> Kernel:
    """Decorator: ``fn`` (float32 tensors in, one tensor out, no data-dependent Python) as a
    :class:`Kernel`."""
    return Kernel(fn)


# How inductor's Python binding calls a compiled CPU kernel (torch 2.13): with the GIL held throughout,
# so a worker's other job slots (decoding, encoding, storing) could not run Python meanwhile; eager torch
# operations release it. The replacement parses the arguments with the GIL, then runs the kernel without
# it (the arguments' tensors stay referenced by the caller). Another torch's binding is left as it is.
_KERNEL_CALL_HOLDING_GIL = "kernel({}); Py_RETURN_NONE;"
_KERNEL_CALL_RELEASING_GIL = (
    "auto call_args = std::make_tuple({}); "
    "{{ PyThreadState* saved = PyEval_SaveThread(); "
    "try {{ std::apply(kernel, call_args); }} catch (...) {{ PyEval_RestoreThread(saved); throw; }} "
    "PyEval_RestoreThread(saved); }} Py_RETURN_NONE;"
)


def _release_gil_in_kernels() -> None:
    from torch._inductor import codecache

    binding = getattr(codecache, "CppPythonBindingsCodeCache", None)
    if binding is not None and getattr(binding, "call_entry_function", None) == _KERNEL_CALL_HOLDING_GIL:
        binding.call_entry_function = _KERNEL_CALL_RELEASING_GIL


@contextlib.contextmanager
def _compile_config():
    """Settings for compiling one class: no duck sizing (above), compiling in this thread (no worker
    pool in a worker process), room for every class and mode of a kernel in dynamo's cache, and
    kernels that run without the GIL.

    ``cpp.min_chunk_size=1``: inductor decides which loops run on several threads from the sizes of
    the call it compiles for, and leaves a loop serial below 512 elements a thread. A class serves every
    image size, but the worker's warm-up compiles it on 24² samples, so loops over one channel (a grey
    or a mask) ran on one thread for every later 1024² image. With this, every loop is parallel; OpenMP
    itself keeps tiny ones cheap."""
    from torch._dynamo import config as dynamo_config
    from torch._inductor import config as inductor_config
    from torch.fx.experimental import _config as fx_config

    _release_gil_in_kernels()
    with (
        fx_config.patch(use_duck_shape=False),
        inductor_config.patch({"compile_threads": 1, "cpp.min_chunk_size": 1}),
        dynamo_config.patch(recompile_limit=64, accumulated_recompile_limit=4096, error_on_recompile=False),
    ):
        yield


def _submit(k: Kernel, cls: tuple, args: tuple) -> None:
    global _thread
    _jobs.put((k, cls, args))
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_compile_loop, name="darkroom-fuse", daemon=True)
            _thread.start()


def _compile_loop() -> None:
    while True:
        k, cls, args = _jobs.get()
        try:
            k.compile_class(cls, args)
        finally:
            _jobs.task_done()
