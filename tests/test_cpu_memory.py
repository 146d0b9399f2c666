"""Training on a CPU keeps large freed blocks for reuse instead of mapping fresh pages each step (issue 24)."""

import ctypes
import subprocess
import sys

import pytest

# In a fresh process: how many bytes glibc holds in mmap'd blocks while a 100 MB tensor is alive.
PROBE = """
import ctypes, sys, torch
from braintriage.cpu_memory import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
x = torch.ones(25_000_000)  # 100 MB
print(applied, libc.mallinfo2().hblkhd)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_large_tensors_come_from_the_reused_heap_not_fresh_mappings():
    try:
        ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("not glibc >= 2.33")
    default = subprocess.run([sys.executable, "-c", PROBE, "default"], capture_output=True, text=True, check=True)
    kept = subprocess.run([sys.executable, "-c", PROBE, "keep"], capture_output=True, text=True, check=True)
    applied_default, mapped_default = default.stdout.split()
    applied, mapped = kept.stdout.split()
    assert int(mapped_default) >= 100_000_000  # glibc maps a block this large by itself ...
    assert applied == "True" and int(mapped) < 100_000_000  # ... and no longer once told to keep memory
