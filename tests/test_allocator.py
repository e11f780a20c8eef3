"""Freed array memory is reused from the heap, so repeated simulator temporaries do not page-fault."""

import resource
import sys

import numpy as np
import pytest

from fusionsim.envs.allocator import reuse_freed_memory


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _step_like_temporaries() -> float:
    """Six 4 MB arrays alive at once, then freed, as in one simulator step."""
    held = [np.ones(1_000_000, dtype=np.float32) for _ in range(6)]
    return sum(float(a[0]) for a in held)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_repeated_temporaries_do_not_page_fault_after_reuse_freed_memory():
    if not reuse_freed_memory():
        pytest.skip("not glibc, or MALLOC_*_THRESHOLD_ set in the environment")
    for _ in range(3):  # grow the heap to the size used below
        _step_like_temporaries()
    before = _page_faults()
    for _ in range(20):
        _step_like_temporaries()
    # with glibc's start-up settings the freed heap top is trimmed each time: about 116,000 faults here
    assert _page_faults() - before < 1000
