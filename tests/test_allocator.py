"""The API process keeps freed upload batches for reuse instead of having the kernel map and
zero fresh pages for every batch (allocator.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Gathers batches of 256 KiB chunks (as an upload's body arrives), frees each, and prints the
# page faults the last 40 batches cost. A process of its own: the allocator's settings are
# per process, and the test run's threads would fault meanwhile.
PROBE = """
import resource, sys
from aiplatform.allocator import keep_freed_memory_for_reuse

if sys.argv[1] == "tuned":
    assert keep_freed_memory_for_reuse()

def batch():
    return [bytes(range(256)) * 1024 for _ in range(32)]  # 8 MiB in 256 KiB chunks

for _ in range(5):
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_batches_are_reused_instead_of_mapped_again() -> None:
    default, tuned = faults("default"), faults("tuned")
    print(f"\npage faults for 40 batches of 8 MiB: {default:,} by default, {tuned:,} tuned")
    # By default every batch is mapped afresh: 2,048 pages of 4 KiB each.
    assert default > 40 * 1_000
    assert tuned < 1_000
