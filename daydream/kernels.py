"""What a GPU kernel is, by its name (what an operator costs, by its shapes: daydream.costs).

Kernel classes come from name patterns of the libraries that emit them (cuBLAS/cuBLASLt,
CUTLASS, rocBLAS/Tensile, hipBLASLt, cuDNN, MIOpen, composable_kernel, NCCL/RCCL, FlashAttention,
PyTorch ATen, Triton). The first class whose pattern matches wins, in this order:

  other         (explicitly, first) sorts and torch.cuda._sleep's spin_kernel, whose argument
                types would otherwise match a later class.
  copy          Memcpy/Memset (ROCm: CopyHostToDevice..., FillBuffer), tensor copies and casts (direct_copy, cat, layout transposes such
                as cuDNN nchwToNhwc / MIOpen batched_transpose): pure data movement.
  communication NCCL/RCCL collectives and point-to-point (ncclKernel_*, ncclDevKernel_*, ...).
  attention     fused attention (flash_fwd/bwd, FlashAttention 3 flash::, cuDNN SDPA
                flash_fprop/bprop, fmha incl. CK ck_tile::Fmha and aiter, efficient attention,
                Triton attn_fwd) -- before conv and GEMM because these names carry CUTLASS types
                and "fprop".
  optimizer     fused optimizer steps (multi_tensor_apply, fused Adam/SGD/Adagrad, fbgemm
                embedding backward with a fused Adagrad update).
  normalization batch/layer/group/instance/RMS norm forward and backward.
  conv          cuDNN/MIOpen/CK convolutions and their helpers (implicit GEMM, winograd, FFT,
                dgrad/wgrad, im2col) -- before GEMM because implicit-GEMM convs say "gemm".
  gemm          dense matrix multiply: cuBLAS (sgemm/hgemm/gemv/xmma_gemm/splitK, cublasLt
                epilogues), CUTLASS, nvjet, rocBLAS/Tensile (Cijk_), hipBLASLt, CK gemm, ROCm
                skinny GEMMs (wvSplitK), Triton mm templates.
  reduction     reductions along a dimension: reduce_kernel, softmax / log_softmax (row max and
                sum; memory-bound, so modelled like a reduction, not like attention), losses
                (nll, cross entropy), pooling, scans, Triton red/per kernels.
  elementwise   pointwise kernels (elementwise_kernel, vectorized_elementwise, Triton poi),
                fills, dropout, random, gather/scatter/index and embedding lookups.
  other         anything else.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from daydream.errors import DaydreamError
from daydream.names import CLASSIFY_CHARS

CLASSES = ("gemm", "conv", "attention", "elementwise", "reduction", "normalization",
           "optimizer", "communication", "copy", "other")

# (class, pattern), tried in order; the first match wins. Patterns are case-insensitive.
_RULES: tuple[tuple[str, str], ...] = (
    # sorts and sleeps are neither reductions nor pointwise; name them before their arguments
    # (which mention index/scan types) can match a later class
    ("other", r"radixsort|segmentedsort|sort_kernel|spin_kernel"),
    ("copy", r"^(memcpy|memset)\b|copy(host|device)to(host|device)|^fillbuffer|direct_copy_kernel|copy_device_to_device|_copy_kernel_cuda"
             r"|catarraybatchedcopy|nchwtonhwc|nhwctonchw|batched_transpose|transpose_kernel"
             r"|subtensoropwithcasttensor|copytensor|\bcopy_kernel|tensor_copy"),
    ("communication", r"nccl|rccl|msccl|allreduce|all_reduce|allgather|all_gather"
                      r"|reducescatter|reduce_scatter|alltoall|all_to_all|sendrecv"
                      r"|cross_device_reduce|\bbroadcast_kernel"),
    ("attention", r"flash_fwd|flash_bwd|flash::|flashattn|flash_fprop|flash_bprop|_sdpa_|fmha"
                  r"|attn_fwd|attn_bwd|\battn_"
                  r"|attention|mha_fwd|mha_bwd|efficient_attention|xformers|_attn\b"),
    ("optimizer", r"multi_tensor_apply|fused_adam|fusedadam|adamw?_|_adamw?\b|\badam|fused_sgd"
                  r"|sgd_kernel|lamb_|_adagrad|adagrad_|rowwise_adagrad|lion_|optimizer"),
    ("normalization", r"batch_norm|batchnorm|bn_fw|bn_bw|\bbn_|layer_norm|layernorm|group_norm"
                      r"|groupnorm|instance_norm|rms_?norm|rmsnorm|norm_fwd|norm_bwd|welford"
                      r"|gammabeta|rowwisemoments|computefusedparams"),
    ("conv", r"conv|scudnn|implicit_gemm|implicit_convolve|explicit_convolve|winograd|fft2d"
             r"|fft_|\bdgrad|\bwgrad|_dgrad|_wgrad|dgrad_|wgrad_|fprop|\bigemm_|gtcx|miopen"
             r"|im2col|col2im|cudnn::cnn|cask_cudnn|cutlass_cudnn|cudnn_(infer|train)"
             r"|_scudnn|gridwise_convolution|naive_conv"),
    ("gemm", r"(?<!fb)gemm|gemv|\bdot_kernel|cublas|cutlass|\bcijk_|nvjet|hipblaslt|rocblas|tensile"
             r"|xmma|wgmma|matmul|_mm_|triton_tem_fused_(b?mm|addmm)|splitkreduce|\bmm_kernel"
             r"|^wvsplitk"),
    ("reduction", r"reduce|reduction|softmax|nll_loss|classnllcriterion|cross_entropy|_pool"
                  r"|pool_|pooling|cub::device(?:reduce|scan|segmentedreduce)|scan|argmax"
                  r"|argmin|topk|cumsum|triton_red_|triton_per_|_sum_|sum_kernel|mean_kernel"
                  r"|norm_kernel|\bamax|\bamin"),
    ("elementwise", r"elementwise|triton_poi_|functor|fill|dropout|distribution|random|uniform"
                    r"|bernoulli|index|gather|scatter|embedding|where|masked|clamp|relu|gelu"
                    r"|silu|sigmoid|tanh|threshold|pow_|exp_|log_|sqrt|_kernel_cuda|arange"
                    r"|permute|bounds_check|subtensorop|scalepackedtensor|addcmul|addcdiv|cast"
                    r"|triton_"),
)
# groups made non-capturing so pandas does not warn about match groups
_COMPILED = tuple((cls, re.compile(re.sub(r"\((?!\?)", "(?:", pat), re.IGNORECASE))
                  for cls, pat in _RULES)


def _classify_unique(names: np.ndarray) -> np.ndarray:
    """Class of each distinct name: one vectorized regex pass per class over the uniques."""
    series = pd.Series(names, dtype=object).fillna("").astype(str).str.slice(0, CLASSIFY_CHARS)
    out = np.full(len(series), "other", dtype=object)
    todo = np.ones(len(series), dtype=bool)
    for cls, pattern in _COMPILED:
        if not todo.any():
            break
        hit = series[todo].str.contains(pattern, regex=True).to_numpy(dtype=bool)
        idx = np.flatnonzero(todo)[hit]
        out[idx] = cls
        todo[idx] = False
    return out


# name -> class for every name seen so far; kernel names come from a bounded vocabulary
# (libraries' kernels), so this stays small. Plain dict lookups beat pandas' object hashtable
# by ~10x on long C++ names.
_SEEN: dict[str, str] = {}
_SEEN_LIMIT = 1_000_000


def classify(names) -> np.ndarray:
    """Kernel class (one of CLASSES) of each name, as a numpy array of str.

    Vectorized: only names not seen before are matched (one regex pass per class over them),
    the rest is a dictionary lookup, so a million events with a few thousand distinct names
    take a fraction of a second. Missing names (None/NaN) are 'other'."""
    if isinstance(names, str):
        raise DaydreamError("classify() takes a sequence of kernel names; use classify_one()")
    values = names.tolist() if isinstance(names, (pd.Series, pd.Index, np.ndarray)) \
        else list(names)
    seen = _SEEN
    new = [n for n in set(values) if isinstance(n, str) and n not in seen]
    if new:
        if len(seen) + len(new) > _SEEN_LIMIT:
            seen.clear()
        seen.update(zip(new, _classify_unique(np.array(new, dtype=object))))
    get = seen.get
    return np.array([get(n, "other") if isinstance(n, str) else "other" for n in values],
                    dtype=object)


@lru_cache(maxsize=65536)
def classify_one(name: str) -> str:
    """Class of a single kernel name (cached)."""
    return str(_classify_unique(np.array([name], dtype=object))[0])


