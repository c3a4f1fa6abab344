"""What an operator costs, by its recorded shapes and dtypes, and how long that takes on a device.

Operator costs (`op_cost`) count a multiply-add as 2 FLOPs and follow torch.utils.flop_counter
for matmuls, convolutions and attention (bias adds are not counted; attention counts the full
score matrix, causal or not). Bytes are the sizes of the tensor inputs plus an estimate of the
output. `roofline` turns (FLOPs, bytes) into seconds on a device.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from daydream.errors import DaydreamError
from daydream.hardware import Device, effective_peak


# --------------------------------------------------------------------------------------------
# dtypes as Kineto records them in "Input type"
# --------------------------------------------------------------------------------------------
# element size in bytes, and the peak-FLOP/s key the dtype computes at
_TYPES: dict[str, tuple[float, str]] = {
    "float": (4, "fp32"), "double": (8, "fp64"), "c10::Half": (2, "fp16"),
    "c10::BFloat16": (2, "bf16"), "c10::Float8_e4m3fn": (1, "fp8"),
    "c10::Float8_e5m2": (1, "fp8"), "c10::Float8_e4m3fnuz": (1, "fp8"),
    "c10::Float8_e5m2fnuz": (1, "fp8"), "c10::Float8_e8m0fnu": (1, "fp8"),
    "c10::Float4_e2m1fn_x2": (1, "fp4"),  # two fp4 values per byte; shape counts the pairs
    "signed char": (1, "int8"), "unsigned char": (1, "int8"), "c10::qint8": (1, "int8"),
    "c10::quint8": (1, "int8"), "c10::quint4x2": (1, "int4"), "c10::qint32": (4, "int8"),
    "short int": (2, "int8"), "short": (2, "int8"), "unsigned short": (2, "int8"),
    "int": (4, "int8"), "unsigned int": (4, "int8"), "long int": (8, "int8"),
    "long": (8, "int8"), "long long": (8, "int8"), "unsigned long": (8, "int8"),
    "bool": (1, "int8"), "c10::complex<float>": (8, "fp32"),
    "c10::complex<double>": (16, "fp64"), "c10::complex<c10::Half>": (4, "fp16"),
}
# Entries that are not tensors: Kineto's names for scalars and lists.
_NOT_TENSOR = {"", "Scalar", "Int", "Double", "Bool", "ScalarList", "GenericList", "Device",
               "Layout", "String", "None", "TensorList"}
# A TensorList entry carries shapes but no dtype: optimizer/foreach lists are almost always
# fp32 master weights and states, so 4 bytes is assumed.
TENSORLIST_ELEMENT_BYTES = 4


def dtype_bytes(type_name: str) -> float:
    """Bytes per element of a Kineto 'Input type' string (0 for scalars and lists)."""
    if type_name in _NOT_TENSOR:
        return 0.0
    entry = _TYPES.get(type_name)
    if entry is None:
        raise DaydreamError(f"unknown tensor type {type_name!r} in 'Input type'")
    return float(entry[0])


def compute_dtype(input_types: Sequence[str]) -> str:
    """The peak-FLOP/s key an op computes in: that of its first floating-point tensor input
    ('fp32' when it has none)."""
    for t in input_types or ():
        entry = _TYPES.get(t)
        if entry and entry[1] in ("fp64", "fp32", "fp16", "bf16", "fp8", "fp4"):
            return entry[1]
    for t in input_types or ():
        entry = _TYPES.get(t)
        if entry and t not in ("bool", "long int", "long", "int", "long long"):
            return entry[1]
    return "fp32"


# --------------------------------------------------------------------------------------------
# op_cost
# --------------------------------------------------------------------------------------------
def numel(shape) -> int:
    return int(math.prod(int(s) for s in shape)) if shape is not None else 0


def linear_shape(dims) -> dict | None:
    """{"x": input shape, "w": weight shape, "bias": has a bias} of an aten::linear call's recorded
    "Input Dims", or None where they are not a Linear's."""
    if not isinstance(dims, (list, tuple)) or len(dims) < 2:
        return None
    x, w = dims[0], dims[1]
    if not (_is_shape(x) and _is_shape(w) and len(w) == 2 and x and x[-1] == w[1]):
        return None
    bias = len(dims) > 2 and _is_shape(dims[2]) and len(dims[2]) == 1
    return {"x": [int(v) for v in x], "w": [int(v) for v in w], "bias": bool(bias)}


def linear_shape_key(shape: dict) -> tuple:
    return tuple(shape["x"]), tuple(shape["w"]), bool(shape["bias"])


def op_shape_key(name: str, args: dict) -> str:
    """What identifies one op call's shape (daydream.profile.shapes): name, sizes, strides and
    scalar arguments as recorded."""
    return repr((name, args.get("Input Dims"), args.get("Input Strides"), args.get("Concrete Inputs")))


def conv_key(name: str, dims, concrete) -> str | None:
    """What identifies a CPU convolution's shape in both directions: input and weight sizes,
    stride, padding, dilation and groups, from an aten::convolution call (input, weight, bias,
    stride, padding, dilation, transposed, output_padding, groups) or an aten::convolution_backward
    call (grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
    output_padding, groups, output_mask); None for a transposed or unrecorded one."""
    at = {"aten::convolution": (0, 1, 3, 4, 5, 6, 8), "aten::convolution_backward": (1, 2, 4, 5, 6, 7, 9)}.get(name)
    if at is None or not isinstance(dims, list) or not isinstance(concrete, list) or len(concrete) <= at[-1] \
            or len(dims) <= at[1]:
        return None
    x, w, stride, pad, dil, transposed, groups = (dims[at[0]], dims[at[1]], *(concrete[i] for i in at[2:]))
    if transposed != "False" or not (_is_shape(x) and _is_shape(w) and x and w):
        return None
    return repr((list(x), list(w), stride, pad, dil, groups))


def conv_shape_key(shape: dict) -> str:
    """conv_key of a re-timed convolution entry (daydream.profile.shapes, cpu_conv_shapes)."""
    return repr((list(shape["x"]), list(shape["w"]), shape["stride"], shape["padding"], shape["dilation"],
                 shape["groups"]))


def _is_shape(x) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(s, (int, np.integer)) for s in x)


def tensors_of(dims, types) -> list[tuple[list, float]]:
    """(shape, element bytes) of every tensor input, TensorLists flattened."""
    out = []
    for i, shape in enumerate(dims or ()):
        t = types[i] if types is not None and i < len(types) else ""
        if t == "TensorList" and isinstance(shape, (list, tuple)):
            out.extend((list(s), TENSORLIST_ELEMENT_BYTES) for s in shape if _is_shape(s))
        elif t not in _NOT_TENSOR and _is_shape(shape):
            out.append((list(shape), dtype_bytes(t)))
    return out


def _broadcast(shapes: list[list]) -> list:
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        sizes = [s[len(s) - ndim + axis] for s in shapes if len(s) - ndim + axis >= 0]
        out.append(max(sizes) if sizes else 1)
    return out


def _parse_list(text, n: int, default: int) -> list[int]:
    """A Concrete Inputs entry like '[2, 2]' or '1' as n ints; default when missing."""
    if text is None or text == "":
        return [default] * n
    values = [int(v) for v in re.findall(r"-?\d+", str(text))]
    if not values:
        return [default] * n
    return values * n if len(values) == 1 else values[:n] + [values[-1]] * (n - len(values))


def _concrete(concrete, i):
    return concrete[i] if concrete is not None and i < len(concrete) else None


def _mm_flops(m, k, n, batch=1) -> float:
    return 2.0 * batch * m * k * n


def _matmul_shapes(a: list, b: list) -> tuple[float, list]:
    """FLOPs and output shape of torch.matmul(a, b) with numpy broadcasting rules."""
    a1, b1 = len(a) == 1, len(b) == 1
    a2 = [1] + a if a1 else a
    b2 = b + [1] if b1 else b
    m, k = a2[-2], a2[-1]
    n = b2[-1]
    batch = _broadcast([a2[:-2], b2[:-2]])
    out = batch + ([] if a1 else [m]) + ([] if b1 else [n])
    return _mm_flops(m, k, n, numel(batch)), out


def _conv_out(size, k, stride, pad, dil) -> int:
    return max((size + 2 * pad - dil * (k - 1) - 1) // stride + 1, 0)


# Where each convolution signature keeps stride, padding, dilation, transposed, groups
# (positions in the op's argument list; None = not an argument).
_CONV_ARGS = {
    "aten::conv1d": (3, 4, 5, None, 6), "aten::conv2d": (3, 4, 5, None, 6),
    "aten::conv3d": (3, 4, 5, None, 6),
    "aten::convolution": (3, 4, 5, 6, 8), "aten::_convolution": (3, 4, 5, 6, 8),
    "aten::conv_transpose1d": (3, 4, 7, True, 6), "aten::conv_transpose2d": (3, 4, 7, True, 6),
    "aten::conv_transpose3d": (3, 4, 7, True, 6),
    # cudnn/miopen/mkldnn take padding before stride
    "aten::cudnn_convolution": (3, 2, 4, None, 5), "aten::miopen_convolution": (4, 3, 5, None, 6),
    "aten::mkldnn_convolution": (4, 3, 5, None, 6),
    "aten::cudnn_convolution_transpose": (4, 2, 5, True, 6),
    "aten::miopen_convolution_transpose": (5, 3, 6, True, 7),
}


def _conv_flops(x: list, w: list, out_spatial: list, transposed: bool) -> float:
    """torch.utils.flop_counter.conv_flop_count: 2 * N * Cout * Cin/g * prod(kernel) *
    prod(output spatial) (input spatial for a transposed conv, whose weight is [Cin, Cout/g])."""
    spatial = x[2:] if transposed else out_spatial
    return 2.0 * x[0] * numel(spatial) * numel(w)


def _conv_cost(name, tensors, concrete) -> tuple[float, float]:
    (x, xb), (w, _) = tensors[0], tensors[1]
    stride_i, pad_i, dil_i, trans_i, groups_i = _CONV_ARGS[name]
    nsp = len(x) - 2
    # Traces without Concrete Inputs do not say stride/padding: stride 1, 'same' padding and
    # dilation 1 are assumed (over-counts a stride-s conv by s**nsp).
    stride = _parse_list(_concrete(concrete, stride_i), nsp, 1)
    dil = _parse_list(_concrete(concrete, dil_i), nsp, 1)
    pad_text = _concrete(concrete, pad_i)
    pad = _parse_list(pad_text, nsp, 0) if pad_text not in (None, "") else [
        d * (k - 1) // 2 for d, k in zip(dil, w[2:])]
    transposed = trans_i is True or (trans_i is not None and str(
        _concrete(concrete, trans_i)).strip().lower() == "true")
    if transposed:
        groups = _parse_list(_concrete(concrete, groups_i), 1, 1)[0] if groups_i else 1
        out_channels = w[1] * max(groups, 1)  # transposed weight: [Cin, Cout/groups, k...]
        out_sp = [(i - 1) * s - 2 * p + d * (k - 1) + 1
                  for i, s, p, d, k in zip(x[2:], stride, pad, dil, w[2:])]
    else:
        out_channels = w[0]
        out_sp = [_conv_out(i, k, s, p, d) for i, k, s, p, d in zip(x[2:], w[2:], stride, pad, dil)]
    out = [x[0], out_channels] + out_sp
    flops = _conv_flops(x, w, out_sp, transposed)
    bytes_ = sum(numel(s) * b for s, b in tensors) + numel(out) * xb
    return flops, bytes_


def _conv_backward_cost(name, tensors, concrete) -> tuple[float, float]:
    """convolution_backward(grad_out, input, weight, ..., output_mask) and the cudnn/miopen
    variants (input, grad_out, weight, ...): each requested gradient costs one forward conv
    (torch.utils.flop_counter.conv_backward_flop)."""
    if name == "aten::convolution_backward":
        (gy, _), (x, xb), (w, wb) = tensors[:3]
        mask_text, trans_text = _concrete(concrete, 10), _concrete(concrete, 7)
    else:  # aten::cudnn_convolution_backward / miopen_convolution_backward: (input, grad_out, w)
        (x, xb), (gy, _), (w, wb) = tensors[:3]
        mask_text, trans_text = _concrete(concrete, len(concrete or ()) - 1), None
    transposed = str(trans_text).strip().lower() == "true"
    mask = [m.lower() == "true" for m in re.findall(r"True|False|true|false", str(mask_text))]
    mask = (mask + [True, True, True])[:3] if mask else [True, True, False]
    one = _conv_flops(x, w, gy[2:], transposed)
    flops = one * (int(mask[0]) + int(mask[1]))
    read = sum(numel(s) * b for s, b in tensors[:3])
    written = (numel(x) * xb if mask[0] else 0) + (numel(w) * wb if mask[1] else 0) + (
        gy[1] * xb if mask[2] else 0)
    return flops, read + written


def _conv_grad_part_cost(name, tensors, concrete) -> tuple[float, float]:
    """Old cuDNN split backward ops: backward_input(self_size, grad_out, weight, ...) and
    backward_weight(weight_size, grad_out, self, ...). The size argument is a list: for the
    weight gradient, the kernel size comes from Concrete Inputs or stays unknown (NaN)."""
    if name == "aten::cudnn_convolution_backward_input":
        (gy, gb), (w, wb) = tensors[:2]
        flops = 2.0 * gy[0] * numel(gy[2:]) * numel(w)
        size = _parse_list(_concrete(concrete, 0), len(gy), 0)
        if not all(size):  # input size not recorded: stride 1 assumed, as for forward convs
            size = [gy[0], w[1]] + list(gy[2:])
        return flops, float(numel(gy) * gb + numel(w) * wb + numel(size) * gb)
    (gy, gb), (x, xb) = tensors[:2]
    size = _parse_list(_concrete(concrete, 0), len(x), 0)
    if not all(size):
        return math.nan, numel(gy) * gb + numel(x) * xb
    return (2.0 * gy[0] * numel(gy[2:]) * numel(size),
            numel(gy) * gb + numel(x) * xb + numel(size) * xb)


def attention_dims(name, tensors) -> tuple[int, int, int, int, int, int]:
    """(batch, heads, Lq, Lkv, Dqk, Dv); the _flash/_efficient_attention_forward ops take
    [B, L, H, D], the scaled_dot_product_* ops [B, H, L, D]."""
    (q, _), (k, _), (v, _) = tensors[:3]
    if name in ("aten::_flash_attention_forward", "aten::_efficient_attention_forward"):
        return q[0], q[2], q[1], k[1], q[3], v[3]
    if len(q) == 3:  # unbatched [H, L, D]
        return 1, q[0], q[1], k[1], q[2], v[2]
    return numel(q[:-3]) or 1, q[-3], q[-2], k[-2], q[-1], v[-1]


def _attention_cost(name, tensors) -> tuple[float, float]:
    """torch.utils.flop_counter.sdpa_flop_count: Q@K^T plus P@V, 2*B*H*Lq*Lkv*(Dqk + Dv)."""
    b, h, lq, lkv, dqk, dv = attention_dims(name, tensors)
    flops = 2.0 * b * h * lq * lkv * (dqk + dv)
    qb = tensors[0][1]
    read = sum(numel(s) * nb for s, nb in tensors[:3])
    return flops, read + b * h * lq * dv * qb


def _attention_backward_cost(name, tensors) -> tuple[float, float]:
    """torch.utils.flop_counter.sdpa_backward_flop_count: four bmms, 4*B*H*Lq*Lkv*(Dqk + Dv).
    Inputs are (grad_out, q, k, v, out, ...)."""
    b, h, lq, lkv, dqk, dv = attention_dims(name.replace("_backward", "_forward"), tensors[1:4])
    flops = 4.0 * b * h * lq * lkv * (dqk + dv)
    read = sum(numel(s) * nb for s, nb in tensors[:5])
    written = sum(numel(s) * nb for s, nb in tensors[1:4])  # dq, dk, dv
    return flops, read + written


_ATTENTION_FWD = {"aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention",
                  "aten::_scaled_dot_product_efficient_attention",
                  "aten::_scaled_dot_product_cudnn_attention",
                  "aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_flash_attention_forward", "aten::_efficient_attention_forward"}
_ATTENTION_BWD = {"aten::_scaled_dot_product_flash_attention_backward",
                  "aten::_scaled_dot_product_efficient_attention_backward",
                  "aten::_scaled_dot_product_cudnn_attention_backward",
                  "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                  "aten::_flash_attention_backward", "aten::_efficient_attention_backward"}

# Ops that only reshape metadata or allocate: no FLOPs, no DRAM traffic.
_FREE = {"aten::view", "aten::reshape", "aten::_reshape_alias", "aten::_unsafe_view", "aten::t",
         "aten::transpose", "aten::permute", "aten::expand", "aten::as_strided", "aten::squeeze",
         "aten::unsqueeze", "aten::slice", "aten::select", "aten::narrow", "aten::flatten",
         "aten::unflatten", "aten::detach", "detach", "aten::detach_", "detach_", "aten::alias",
         "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::resize_", "aten::set_",
         "aten::split", "aten::chunk", "aten::unbind", "aten::view_as", "aten::expand_as",
         "aten::lift_fresh", "aten::result_type", "aten::is_nonzero", "aten::item",
         "aten::_local_scalar_dense", "aten::conj", "aten::resolve_conj", "aten::resolve_neg",
         "aten::contiguous", "aten::to", "aten::type_as", "aten::broadcast_tensors",
         "aten::split_with_sizes", "aten::numpy_T", "aten::matrix_H", "aten::mT"}
# Data movement: read the inputs, write as much again (cat/stack/index: the output is the
# gathered rows).
_COPY = {"aten::copy_", "aten::_to_copy", "aten::clone", "aten::cat", "aten::_cat",
         "aten::stack", "aten::index_select", "aten::embedding", "aten::gather", "aten::index",
         "aten::contiguous_copy", "aten::_copy_from", "aten::repeat", "aten::roll",
         "aten::flip", "aten::masked_select", "aten::take"}
# Writes only.
_FILL = {"aten::fill_", "aten::zero_", "aten::zeros", "aten::ones", "aten::full",
         "aten::zeros_like", "aten::ones_like", "aten::full_like", "aten::normal_",
         "aten::uniform_", "aten::randn", "aten::rand", "aten::bernoulli_", "aten::arange",
         "aten::randperm"}
_REDUCE = {"aten::sum", "aten::mean", "aten::amax", "aten::amin", "aten::max", "aten::min",
           "aten::all", "aten::any", "aten::argmax", "aten::argmin", "aten::norm",
           "aten::linalg_vector_norm", "aten::var", "aten::std", "aten::var_mean",
           "aten::std_mean", "aten::prod", "aten::logsumexp", "aten::mse_loss",
           "aten::nll_loss", "aten::nll_loss_forward", "aten::nll_loss_nd",
           "aten::cross_entropy_loss", "aten::l1_loss", "aten::smooth_l1_loss",
           "aten::binary_cross_entropy", "aten::binary_cross_entropy_with_logits",
           "aten::cumsum", "aten::count_nonzero", "aten::max_pool2d_with_indices",
           "aten::max_pool2d", "aten::max_pool1d", "aten::max_pool3d", "aten::avg_pool2d",
           "aten::adaptive_avg_pool2d", "aten::_adaptive_avg_pool2d", "aten::adaptive_max_pool2d",
           "aten::max_pool3d_with_indices", "aten::avg_pool3d", "aten::_adaptive_avg_pool3d"}
# Row-wise ops whose output has the input's shape (softmax: max, sum, normalise).
_ROWWISE = {"aten::softmax", "aten::_softmax", "aten::log_softmax", "aten::_log_softmax",
            "aten::_softmax_backward_data", "aten::_log_softmax_backward_data",
            "aten::max_pool2d_with_indices_backward", "aten::avg_pool2d_backward",
            "aten::adaptive_avg_pool2d_backward", "aten::_adaptive_avg_pool2d_backward",
            "aten::nll_loss_backward", "aten::mse_loss_backward"}
_NORM = {"aten::layer_norm", "aten::native_layer_norm", "aten::native_layer_norm_backward",
         "aten::batch_norm", "aten::native_batch_norm", "aten::_batch_norm_impl_index",
         "aten::cudnn_batch_norm", "aten::miopen_batch_norm", "aten::_native_batch_norm_legit",
         "aten::_native_batch_norm_legit_no_training", "aten::native_batch_norm_backward",
         "aten::cudnn_batch_norm_backward", "aten::miopen_batch_norm_backward",
         "aten::_batch_norm_impl_index_backward", "aten::batch_norm_backward",
         "aten::group_norm", "aten::native_group_norm", "aten::native_group_norm_backward",
         "aten::instance_norm", "aten::rms_norm", "aten::_fused_rms_norm",
         "aten::_fused_rms_norm_backward"}
# Arithmetic per element of a normalization: subtract mean, square-accumulate for the variance,
# multiply by 1/std, scale, shift (5 per element, forward and backward alike).
NORM_FLOPS_PER_ELEMENT = 5
# Pointwise math: aten ops that map elements to elements, in-place (trailing _) or not.
_POINTWISE_PREFIX = re.compile(
    r"^aten::(add|sub|rsub|mul|div|true_divide|floor_divide|pow|neg|abs|exp|exp2"
    r"|expm1|log|log2|log10|log1p|sqrt|rsqrt|reciprocal|sin|cos|tan|tanh|sigmoid|relu|relu6"
    r"|leaky_relu|gelu|silu|mish|elu|selu|hardtanh|hardswish|hardsigmoid|softplus|clamp"
    r"|clamp_min|clamp_max|clip|threshold|threshold_backward|gelu_backward|silu_backward"
    r"|sigmoid_backward|tanh_backward|eq|ne|lt|le|gt|ge|where|masked_fill|maximum|minimum"
    r"|lerp|addcmul|addcdiv|sign|floor|ceil|round|trunc|frac|erf|erfc|dropout|native_dropout"
    r"|native_dropout_backward|bitwise_and|bitwise_or|bitwise_not|logical_and|logical_or"
    r"|logical_not|square|copysign|fmod|remainder|nan_to_num|sgn|isnan|isinf)_?$")


def _pointwise_cost(tensors) -> tuple[float, float]:
    """One FLOP per output element; bytes = inputs + an output of the broadcast shape in the
    first input's dtype (an in-place op writes its first input, which is the same size)."""
    out = _broadcast([s for s, _ in tensors])
    return float(numel(out)), float(sum(numel(s) * b for s, b in tensors)
                                     + numel(out) * tensors[0][1])


def _foreach_cost(dims, types) -> tuple[float, float]:
    """_foreach_* list ops (optimizer steps): one FLOP per element of the first list, which is
    written (in place or as a new list); every list is read."""
    lists = [d for d, t in zip(dims, types) if t == "TensorList" and isinstance(d, list)]
    if not lists:
        return math.nan, math.nan
    elements = sum(numel(s) for s in lists[0] if _is_shape(s))
    read = sum(numel(s) for lst in lists for s in lst if _is_shape(s))
    return float(elements), float((read + elements) * TENSORLIST_ELEMENT_BYTES)


def _reduce_output(name, tensors, concrete) -> int:
    """Output elements of a reduction or pooling op. Reductions: the dims not listed in the
    'dim' Concrete Input (all of them when it is missing or empty). Pooling: the output size
    from Concrete Inputs (adaptive: output_size; max/avg: kernel, stride, padding), else the
    common 2x2 window of stride 2."""
    x = tensors[0][0]
    if "pool" in name:
        nsp = 2 if "2d" in name else 3 if "3d" in name else 1
        lead = x[:-nsp]
        if "adaptive" in name:
            size = _parse_list(_concrete(concrete, 1), nsp, 1)
            return numel(lead) * numel(size)
        kernel = _parse_list(_concrete(concrete, 1), nsp, 2)
        stride_text = _concrete(concrete, 2)
        stride = _parse_list(stride_text, nsp, 2) if stride_text not in (None, "", "[]") else kernel
        pad = _parse_list(_concrete(concrete, 3), nsp, 0)
        return numel(lead) * numel([_conv_out(i, k, s_, p, 1) for i, k, s_, p in
                                      zip(x[-nsp:], kernel, stride, pad)])
    dims_text = _concrete(concrete, 1)
    dims = [int(d) for d in re.findall(r"-?\d+", str(dims_text))] if dims_text else []
    if not dims or not x:
        return 1
    reduced = {d % len(x) for d in dims}
    return numel([s for i, s in enumerate(x) if i not in reduced])


def _copy_cost(name, tensors, concrete) -> float:
    """Bytes moved by a copy/gather: what is read plus what is written."""
    first, fb = tensors[0]
    if name == "aten::copy_":  # (dst, src): read src, write dst
        src, sb = tensors[1] if len(tensors) > 1 else tensors[0]
        return float(numel(first) * fb + numel(src) * sb)
    if name in ("aten::index_select", "aten::embedding", "aten::gather", "aten::index",
                "aten::take", "aten::masked_select"):
        idx, ib = tensors[-1]
        if name == "aten::gather" or name == "aten::take":
            out = numel(idx)
        else:  # whole rows of the table along dim (0 unless recorded)
            dim = _parse_list(_concrete(concrete, 1), 1, 0)[0] if name == "aten::index_select" \
                else 0
            out = numel(idx) * (numel(first) // max(first[dim % len(first)], 1) if first else 1)
        return float(numel(idx) * ib + 2 * out * fb)
    read = float(sum(numel(s) * b for s, b in tensors))
    return 2 * read


# Autograd bookkeeping spans (AccumulateGrad, XxxBackward0 nodes) only wrap the aten ops that do
# the work and are costed themselves.
_AUTOGRAD_WRAPPER = re.compile(
    r"^(torch::autograd::|autograd::engine::)|^[A-Za-z0-9_]+Backward\d*$")


def _op_cost(name, dims, types, concrete) -> tuple[float, float]:
    tensors = tensors_of(dims, types)
    if name in _FREE or _AUTOGRAD_WRAPPER.match(name):
        return 0.0, 0.0
    if name.startswith("triton_poi") and tensors:  # Inductor pointwise kernels launched as ops
        return _pointwise_cost(tensors)
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                "aten::linear", "aten::_addmm_activation", "aten::addbmm", "aten::dot",
                "aten::mv", "aten::addmv", "aten::vdot", "aten::_scaled_mm"):
        return _matmul_cost(name, tensors)
    if name in _CONV_ARGS and len(tensors) >= 2:
        return _conv_cost(name, tensors, concrete)
    if name in ("aten::convolution_backward", "aten::cudnn_convolution_backward",
                "aten::miopen_convolution_backward") and len(tensors) >= 3:
        return _conv_backward_cost(name, tensors, concrete)
    if name in ("aten::cudnn_convolution_backward_input",
                "aten::cudnn_convolution_backward_weight") and len(tensors) >= 2:
        return _conv_grad_part_cost(name, tensors, concrete)
    if name in _ATTENTION_FWD and len(tensors) >= 3:
        return _attention_cost(name, tensors)
    if name in _ATTENTION_BWD and len(tensors) >= 5:
        return _attention_backward_cost(name, tensors)
    if name.startswith("aten::_foreach_"):
        return _foreach_cost(dims, types)
    if name in _FILL:
        if tensors:
            return 0.0, float(numel(tensors[0][0]) * tensors[0][1])
        return 0.0, math.nan  # factory op: the size is an argument list
    if not tensors:
        return math.nan, math.nan
    read = float(sum(numel(s) * b for s, b in tensors))
    if name in _COPY:
        return 0.0, _copy_cost(name, tensors, concrete)
    if name in _NORM:
        x, xb = tensors[0]
        return float(NORM_FLOPS_PER_ELEMENT * numel(x)), read + numel(x) * xb
    if name in _REDUCE:
        x, xb = tensors[0]
        return float(numel(x)), read + _reduce_output(name, tensors, concrete) * xb
    if name in _ROWWISE:
        x, xb = max(tensors, key=lambda t: numel(t[0]))
        return float(numel(x)), read + numel(x) * xb
    if _POINTWISE_PREFIX.match(name):
        return _pointwise_cost(tensors)
    return math.nan, math.nan


def _matmul_cost(name, tensors) -> tuple[float, float]:
    shapes = [s for s, _ in tensors]
    elem = tensors[0][1] if tensors else 4.0
    if name in ("aten::addmm", "aten::baddbmm", "aten::_addmm_activation", "aten::addbmm",
                "aten::addmv"):
        shapes, operands = shapes[1:3], tensors[1:3]   # (bias, a, b)
        elem = operands[0][1]
    if name == "aten::linear":
        x, w = shapes[0], shapes[1]
        flops = _mm_flops(numel(x[:-1]), x[-1], w[0])
        out = x[:-1] + [w[0]]
    else:
        a, b = shapes[0], shapes[1]
        flops, out = _matmul_shapes(a, b)
        if name == "aten::addbmm":
            out = out[1:]
    read = sum(numel(s) * nb for s, nb in tensors)
    return flops, float(read + numel(out) * elem)


def op_cost(op_name: str, input_dims, input_types, concrete_inputs=None) -> tuple[float, float]:
    """(FLOPs, bytes) of one operator call from its recorded `Input Dims` / `Input type`
    (and `Concrete Inputs` where the trace has them: they give conv stride/padding, reduction
    dims, output masks). Metadata-only ops (view, empty, ...) cost (0, 0); ops this model does
    not know, or shapes that do not determine the cost, give NaN. Composite ops (linear,
    matmul, conv2d, scaled_dot_product_attention) report the same cost as the op they dispatch
    to, so sum over leaf ops or over top-level ops, not both."""
    try:
        return _op_cost(op_name, input_dims, input_types, concrete_inputs)
    except (IndexError, TypeError, ValueError, ArithmeticError, DaydreamError):
        # odd or newer-than-this-table metadata on one op must not stop a whole analysis
        return math.nan, math.nan


def op_costs(op_names, input_dims, input_types, concrete_inputs=None) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """op_cost over columns (e.g. of the cpu_op table: lists, arrays or Series), computed once
    per distinct (name, dims, types, concrete) row and mapped back. Returns (flops, bytes)."""
    names, dims, types = list(op_names), list(input_dims), list(input_types)
    concrete = list(concrete_inputs) if concrete_inputs is not None else [None] * len(names)
    index: dict[str, int] = {}
    codes = np.empty(len(names), dtype=np.int64)
    costs: list[tuple[float, float]] = []
    for i, row in enumerate(zip(names, dims, types, concrete)):
        key = repr(row)
        code = index.get(key)
        if code is None:
            code = index[key] = len(costs)
            costs.append(op_cost(*row))
        codes[i] = code
    table = np.array(costs, dtype=float).reshape(-1, 2)
    return table[codes, 0], table[codes, 1]


# --------------------------------------------------------------------------------------------
# roofline
# --------------------------------------------------------------------------------------------
def _peaks(device: Device, dtype) -> np.ndarray | float:
    if isinstance(dtype, str):
        return effective_peak(device, dtype)
    dtype = np.asarray(dtype, dtype=object)
    lookup = {d: effective_peak(device, d) for d in set(dtype.tolist())}
    return np.array([lookup[d] for d in dtype], dtype=float)


def roofline(flops, bytes_, device: Device, dtype="fp32"):
    """Roofline time in seconds: max(flops / peak_flops[dtype], bytes / mem_bw), with the
    device's dense peak for dtype (see hardware.effective_peak for dtypes it lacks) and its
    DRAM/HBM bandwidth. Scalars or numpy arrays (dtype may be an array of dtype names)."""
    compute = np.asarray(flops, dtype=float) / _peaks(device, dtype)
    memory = np.asarray(bytes_, dtype=float) / device.mem_bw
    out = np.maximum(compute, memory)
    return float(out) if np.ndim(out) == 0 else out


def bound(flops, bytes_, device: Device, dtype="fp32"):
    """'compute' where flops / peak_flops[dtype] >= bytes / mem_bw (the roofline's compute term
    dominates), else 'memory'. Same inputs as roofline()."""
    compute = np.asarray(flops, dtype=float) / _peaks(device, dtype)
    memory = np.asarray(bytes_, dtype=float) / device.mem_bw
    out = np.where(compute >= memory, "compute", "memory")
    return str(out) if np.ndim(out) == 0 else out.astype(object)
