"""Pausing Python's cyclic garbage collector around a hot loop that allocates many short-lived, acyclic objects."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Runs the block with the cyclic collector off and puts it back as it was (nested uses are fine).

    Reference counting still frees every object that is not part of a cycle the moment it is unused; only the
    collection of cycles waits until the block ends. Each collection walks every tracked object of its generation,
    and while a batch of thousands of event dicts is alive the oldest generation's full collections walk the whole
    process (Django, the price catalog, the batch) again and again: that is what this avoids.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
