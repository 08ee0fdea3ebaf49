"""Run a call that might hang or eat memory in a forked child, with a time and a memory limit.

A planted bug of the "billion laughs" or /dev/zero kind never returns and grows without end, so
the test suite must not wait for it in its own process.
"""

from __future__ import annotations

import multiprocessing
import reprlib
import resource
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from potstill.errors import PotstillError

SECONDS = 20  # every path under test answers in about a second; a slow machine gets margin
EXTRA_MEMORY = 2 << 30  # address space the child may add to what the test process has mapped


def outcome_within(call: Callable[..., Any], *args: Any, seconds: float = SECONDS) -> tuple[str, Any, float]:
    """("error", PotstillError message), ("ok", the result) or ("crash", traceback), with the
    seconds taken; fails the test when the call does not answer in time."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_run, args=(sender, call, args))
    start = time.monotonic()
    child.start()
    sender.close()
    if not receiver.poll(seconds):
        child.kill()
        child.join()
        pytest.fail(f"{getattr(call, '__name__', call)}{reprlib.repr(args)} gave no answer within {seconds} s")
    kind, text = receiver.recv()
    child.join()
    return kind, text, time.monotonic() - start


def error_within(call: Callable[..., Any], *args: Any, seconds: float = SECONDS) -> str:
    """The PotstillError message of `call(*args)`; fails the test for a result, another
    exception, or no answer in time."""
    kind, text, _ = outcome_within(call, *args, seconds=seconds)
    assert kind == "error", f"expected a PotstillError, got {kind}: {str(text)[-2000:]}"
    return text


def _run(sender: Any, call: Callable[..., Any], args: tuple[Any, ...]) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_mapped_bytes() + EXTRA_MEMORY, resource.RLIM_INFINITY))
    try:
        result = call(*args)
        # a result may be a huge shared structure (the bug under test): send it summed up
        sender.send(("ok", result if _is_plain(result) else reprlib.repr(result)))
    except PotstillError as error:
        sender.send(("error", str(error)))
    except BaseException:  # noqa: BLE001 - a MemoryError or a bug: report it, the parent decides
        sender.send(("crash", traceback.format_exc()[-4000:]))


def _is_plain(value: Any) -> bool:
    """Text, numbers and tuples of them: safe to send and to show whole."""
    if isinstance(value, tuple):
        return all(_is_plain(item) for item in value)
    return isinstance(value, (str, int, float, type(None)))


def _mapped_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0
