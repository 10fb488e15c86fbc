"""A service settles the garbage collector once started: the start-up heap frozen, the young collected less often."""

from __future__ import annotations

import gc

from rdnsgate.runtime import SERVICE_GC_YOUNG, settle_gc


def test_settle_gc_freezes_what_exists_and_collects_the_young_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        kept = [object() for _ in range(10)]  # alive before: frozen
        settle_gc()
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == SERVICE_GC_YOUNG
        assert kept
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
