"""FLOPs per token, the detected GPU's peak, MFU.

FLOPs per trained token = 6 x parameters (forward and backward of every matrix, the tied head included; the
embedding lookup costs nothing but the head's matmul uses the same weights once) + 6 x n_layer x n_embd x seq_len
for causal attention (QK^T and AV: 2 x 2 x seq x d per token and layer over the full square, halved for causal,
times 3 for forward plus backward). The nominal count: activation recomputation and the blocks a document mask
skips are not subtracted or added, so MFU compares settings on the same work.
"""

from __future__ import annotations

import torch

# Dense bf16 peaks (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name(); first match wins.
PEAK_BF16 = (
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM (HBM3)
    ("H200", 989e12),
    ("H800", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
    ("L4", 121e12),
)


def flops_per_token(n_params: int, n_layer: int, n_embd: int, seq_len: int) -> float:
    return 6.0 * n_params + 6.0 * n_layer * n_embd * seq_len


def peak_flops(device: torch.device, override_tflops: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s or None, the device's name) for MFU; --peak-tflops overrides (and is the only way on a CPU)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if override_tflops:
        return override_tflops * 1e12, name
    if device.type == "cuda":
        for key, peak in PEAK_BF16:
            if key in name:
                return peak, name
    return None, name
