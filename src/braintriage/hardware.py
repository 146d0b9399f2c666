"""What a training run runs on: the device, whether it computes bf16 natively, and the processor's name (the same
seed gives other weights on another processor, so runs name theirs).
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up here: any CUDA GPU since Ampere, and CPUs with AMX or
    AVX512-BF16 (oneDNN runs bf16 convolutions there 2-3x faster than fp32; elsewhere it emulates them)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def hardware_name(device: torch.device) -> str:
    """The processor a run trained on: the same seed gives different weights on another processor (other
    kernels round differently, and training amplifies it), so runs compared number for number name theirs."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")),
                platform.processor() or "unknown CPU")


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        return []
