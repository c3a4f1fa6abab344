"""Kernel classification on the real traces, operator costs on known shapes, the roofline."""
import functools
import gzip
import json
import math
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daydream import hardware as hw
from daydream import costs
from daydream import kernels as k
from daydream.errors import DaydreamError

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
GPU_CATS = {"kernel", "Kernel", "gpu_memcpy", "Memcpy", "gpu_memset", "Memset"}


@functools.lru_cache(maxsize=None)
def _events(rel):
    if rel.endswith(".tar.gz"):
        with tarfile.open(TRACES / rel) as tf:
            member = next(m for m in tf.getmembers() if m.isfile())
            return json.load(tf.extractfile(member))["traceEvents"]
    with gzip.open(TRACES / rel, "rt") as f:
        return json.load(f)["traceEvents"]


def _gpu_frame(rel):
    rows = [(e["name"], e.get("dur", 0)) for e in _events(rel)
            if e.get("cat") in GPU_CATS and e.get("ph") == "X"]
    return pd.DataFrame(rows, columns=["name", "dur"])


GPU_TRACES = sorted(str(p.relative_to(TRACES)) for p in TRACES.glob("*/*.json.gz")
                    if "cpu_only" not in p.name) + ["param/dlrm_ddp_8rank_v100.tar.gz"]


@pytest.mark.parametrize("rel", GPU_TRACES)
def test_kernel_time_is_classified(rel):
    df = _gpu_frame(rel)
    assert len(df) > 0
    df["cls"] = k.classify(df["name"])
    assert set(df["cls"]) <= set(k.CLASSES)
    other = df.loc[df["cls"] == "other"]
    if rel == "hta/cuda_event_sync_a100.json.gz":
        # 71 % of this trace is torch.cuda._sleep's busy-wait, deliberately 'other';
        # every other kernel in it is classified
        assert set(other["name"]) == {"at::cuda::(anonymous namespace)::spin_kernel(long)"}
        return
    share = 1 - other["dur"].sum() / df["dur"].sum()
    assert share >= 0.95, (rel, other.groupby("name")["dur"].sum().nlargest(5))


# Real names from the shared traces (the top kernels by time) and their classes.
SPOT = {
    "volta_sgemm_64x64_nt": "gemm",
    "ampere_sgemm_32x32_sliced1x4_tn": "gemm",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize64x64x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas": "gemm",
    "void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_256x64_16x4_nn_align4>(cutlass_80_tensorop_s1688gemm_256x64_16x4_nn_align4::Params)": "gemm",
    "Cijk_Alik_Bljk_B_BS_BH_Bias_HA_S_SAV_UserArgs_MT16x16x128_MI16x16x1_SN_LDSB0_AFC1": "gemm",
    "void gemvNSP_kernel<float, float, float, float, 1, 16, 4, 1024, false, cublasGemvParams<cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float>, float> >(cublasGemvParams<cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float>, float>)": "gemm",
    "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT": "gemm",
    "cudnn_infer_volta_scudnn_128x64_relu_medium_nn_v1": "conv",
    "sm80_xmma_fprop_implicit_gemm_indexed_tf32f32_tf32f32_f32_nhwckrsc_nchw_tilesize128x128x16_stage4_warpsize2x2x1_g1_tensor16x8x8_alignc4_execute_kernel_cudnn": "conv",
    "void cudnn::detail::dgrad_engine<float, 512, 6, 5, 3, 3, 3, false>(int, int, int, float const*, int, float const*, int, float*, kernel_grad_params, unsigned long long, int, unsigned long long, int, float, int, int, int)": "conv",
    "void fft2d_r2c_32x32<float, false, 0u, false>(float2*, float const*, int, int, int, int, int, int, int, int, int, cudnn::reduced_divisor, bool, int2, int, int)": "conv",
    "igemm_bwd_gtcx3_nhwc_bf16_bx0_ex1_bt256x64x32_wt32x32x8_ws1x1_wr2x2_ta1x8x4x1_1x4x1x64_tb1x4x1x2_1x8x1x32_mh": "conv",
    "_ZN19cutlass_cudnn_train6KernelINS_4conv6kernel23ImplicitGemmConvolutionINS1_11threadblock22ImplicitGemmMultistageINS_4gemm9GemmShapeILi128ELi128ELi32EEE": "conv",
    "void pytorch_flash::flash_fwd_kernel<pytorch_flash::Flash_fwd_kernel_traits<64, 128, 128, 4, false, false, cutlass::bfloat16_t, pytorch_flash::Flash_kernel_traits<64, 128, 128, 4, cutlass::bfloat16_t> >, false, false, false, false>": "attention",
    "attn_fwd": "attention",
    "fmha_cutlassF_f16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::half_t, cutlass::arch::Sm80, true, 64, 64, 64, true, true>::Params)": "attention",
    "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)": "communication",
    "ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)": "communication",
    "ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)": "communication",
    "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::TensorListMetadata<2>, at::native::(anonymous namespace)::BinaryOpListAlphaFunctor<float, 2, 2, 0>, std::vector<std::vector<at::Tensor> > >": "optimizer",
    "void cudnn::bn_bw_1C11_kernel_new<float, float, float2, 128, true, 1>(float, float, float, float, cudnnTensorStruct, float const*)": "normalization",
    "void at::native::batch_norm_backward_kernel<c10::BFloat16, c10::BFloat16, float, int>(torch::headeronly::detail::GenericPackedTensorAccessor)": "normalization",
    "void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>(int, float, c10::BFloat16 const*, c10::BFloat16 const*, c10::BFloat16 const*, float*, float*, c10::BFloat16*)": "normalization",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float, float, float>, unsigned int, float, 4> >(at::native::ReduceOp<float, at::native::MeanOps<float, float, float, float>, unsigned int, float, 4>)": "reduction",
    "void (anonymous namespace)::softmax_warp_forward<float, float, float, 10, true>(float*, float const*, int, int, int)": "reduction",
    "void at::native::(anonymous namespace)::max_pool_forward_nchw<float, float>(int, float const*, long, long, long, int, int, int, int, int, int, int, int, int, int, float*, long*)": "reduction",
    "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, at::detail::Array<char*, 3> >(int, at::native::CUDAFunctor_add<float>, at::detail::Array<char*, 3>)": "elementwise",
    "void at::native::vectorized_elementwise_kernel<8, at::native::GeluCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)::{lambda()#2}::operator()() const::{lambda()#4}::operator()() const::{lambda(c10::BFloat16)#1}, std::array<char*, 2ul> >": "elementwise",
    "triton_poi_fused_add_cos_sin_0": "elementwise",
    "void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::BFloat16, long, unsigned int, 2, 2, -2, true>(at::cuda::detail::TensorInfo<c10::BFloat16, unsigned int>)": "elementwise",
    "void split_embedding_codegen_forward_unweighted_kernel<float, float, float, false, long, 1ul, 8ul>(at::GenericPackedTensorAccessor<float, 1ul, at::RestrictPtrTraits, long>, fbgemm_gpu::FixedDivisor)": "elementwise",
    "Memcpy HtoD (Pageable -> Device)": "copy",
    "Memset (Device)": "copy",
    "void at::native::elementwise_kernel<128, 2, at::native::gpu_kernel_impl_nocast<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}::operator()() const::{lambda(float)#1}> >(int, at::native::gpu_kernel_impl_nocast)": "copy",
    "void cudnn::ops::nchwToNhwcKernel<float, float, float, false, true, (cudnnKernelDataType_t)2>(cudnn::ops::nchw2nhwc_params_t<float>, float const*, float*)": "copy",
    "batched_transpose_32x32_half": "copy",
    "at::cuda::(anonymous namespace)::spin_kernel(long)": "other",
    # cuDNN SDPA (its names say fprop/gemm too), FlashAttention 3, CK and aiter attention
    "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x64_4x1x1_kernel0_0": "attention",
    "cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_7_64x128x64_4x1x1_kernel0_0": "attention",
    "void flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4>>": "attention",
    "void flash_bwd_dot_do_o_kernel<true, Flash_bwd_kernel_traits<>>": "attention",
    "ck_tile::FmhaFwdKernel<ck_tile::BlockFmhaPipelineQRKSVSAsync<>>": "attention",
    "aiter::fmha_fwd_hd128_bf16_causal": "attention",
    "_attn_fwd": "attention",
    # ROCm: composable_kernel, hipBLASLt/Tensile, rocBLAS, MIOpen, skinny GEMMs, rocprim, copies
    "ck::kernel_gemm_xdl_cshuffle_v3<ck::GridwiseGemm_xdl_cshuffle_v3<>>": "gemm",
    "ck::kernel_grouped_conv_fwd_xdl_cshuffle_v3<>": "conv",
    "ck_tile::Layernorm2dFwd<>": "normalization",
    "ck_tile::Rmsnorm2dFwd<ck_tile::Rmsnorm2dFwdPipelineOnePass<>>": "normalization",
    "Cijk_Ailk_Bljk_BBS_BH_Bias_HA_S_SAV_UserArgs_MT256x256x64_MI16x16x1_SN_LDSB1": "gemm",
    "rocblas_gemvt_kernel<false, 256, float, float>": "gemm",
    "wvSplitK_hf_sml_<__hip_bfloat16, 64, 2, 16, 8, 2, 1>": "gemm",
    "MIOpenBatchNormFwdTrainSpatial": "normalization",
    "miopenSp3AsmConv_v21_1_3_gfx9_fp32_stride1": "conv",
    "void rocprim::detail::onesweep_iteration_kernel<rocprim::detail::wrapped_radix_sort_onesweep_config<>>": "other",
    "CopyDeviceToDevice": "copy",
    "FillBuffer": "copy",
    # cuDNN / CUTLASS on the NVIDIA side
    "sm80_xmma_dgrad_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nchw_tilesize128x64x32": "conv",
    "void cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int, 512, true, 1>": "normalization",
    "void cutlass::Kernel2<cutlass_80_tensorop_s16816gemm_relu_bf16_64x64_64x6_tn_align8>": "gemm",
    "flash::FlashAttnFwdSm90<>": "attention",
}


@pytest.mark.parametrize("name,expected", sorted(SPOT.items()))
def test_spot_checks(name, expected):
    assert k.classify_one(name) == expected
    assert k.classify([name])[0] == expected


def test_classify_accepts_series_arrays_lists_and_missing():
    names = ["volta_sgemm_64x64_nt", None, "Memset (Device)", float("nan"), "volta_sgemm_64x64_nt"]
    for given in (names, np.array(names, dtype=object), pd.Series(names)):
        out = k.classify(given)
        assert isinstance(out, np.ndarray) and len(out) == 5
        assert list(out) == ["gemm", "other", "copy", "other", "gemm"]
    assert len(k.classify([])) == 0
    with pytest.raises(DaydreamError):
        k.classify("volta_sgemm_64x64_nt")


def test_classify_a_million_names_fast():
    uniques = _gpu_frame("hta/nccl_2rank_a100_rank0.json.gz")["name"].unique()
    # fresh string objects, as a trace parser makes them, none classified before
    names = pd.Series([f"{n} " for n in np.resize(uniques, 1_000_000)])
    start = time.process_time()
    out = k.classify(names)
    elapsed = time.process_time() - start
    assert len(out) == 1_000_000
    assert (out[: len(uniques)] == k.classify(uniques)).all()
    assert set(out) <= set(k.CLASSES)
    assert elapsed < 1.0, elapsed


# ------------------------------------------------------------------ op_cost: exact values
def test_mm_family():
    assert costs.op_cost("aten::mm", [[64, 32], [32, 16]], ["float", "float"]) == (
        2 * 64 * 32 * 16, (64 * 32 + 32 * 16 + 64 * 16) * 4)
    assert costs.op_cost("aten::addmm", [[16], [64, 32], [32, 16], [], []],
                     ["c10::BFloat16"] * 3 + ["Scalar", "Scalar"]) == (
        2 * 64 * 32 * 16, (16 + 64 * 32 + 32 * 16 + 64 * 16) * 2)
    assert costs.op_cost("aten::bmm", [[8, 64, 32], [8, 32, 16]], ["c10::Half"] * 2) == (
        2 * 8 * 64 * 32 * 16, 8 * (64 * 32 + 32 * 16 + 64 * 16) * 2)
    assert costs.op_cost("aten::baddbmm", [[8, 64, 16], [8, 64, 32], [8, 32, 16], [], []],
                     ["float"] * 3 + ["Scalar"] * 2)[0] == 2 * 8 * 64 * 32 * 16
    # matmul broadcasts a 2-D right operand over the batch; a 1-D operand is a vector
    assert costs.op_cost("aten::matmul", [[4, 8, 64, 32], [32, 16]], ["float"] * 2)[0] == \
        2 * 32 * 64 * 32 * 16
    assert costs.op_cost("aten::matmul", [[64, 32], [32]], ["float"] * 2) == (
        2 * 64 * 32, (64 * 32 + 32 + 64) * 4)
    assert costs.op_cost("aten::linear", [[2, 10, 32], [16, 32], [16]], ["float"] * 3) == (
        2 * 20 * 32 * 16, (2 * 10 * 32 + 16 * 32 + 16 + 2 * 10 * 16) * 4)


def test_conv_with_concrete_inputs():
    # the MI300X ResNet-18 stem: 512x3x224x224, 64x3x7x7, padding 3, stride 2 -> 112x112
    dims = [[512, 3, 224, 224], [64, 3, 7, 7], [], [], [], [], [], [], []]
    types = ["c10::BFloat16", "c10::BFloat16", "", "ScalarList", "ScalarList", "ScalarList",
             "Scalar", "Scalar", "Scalar"]
    concrete = ["", "", "", "[3, 3]", "[2, 2]", "[1, 1]", "1", "False", "False"]
    flops, bytes_ = costs.op_cost("aten::miopen_convolution", dims, types, concrete)
    assert flops == 2 * 512 * 64 * 3 * 7 * 7 * 112 * 112
    assert bytes_ == (512 * 3 * 224 * 224 + 64 * 3 * 7 * 7 + 512 * 64 * 112 * 112) * 2
    # conv2d(input, weight, bias, stride, padding, dilation, groups): depthwise, stride 1
    flops, _ = costs.op_cost("aten::conv2d", [[1, 32, 10, 10], [32, 1, 3, 3], [32], [], [], [], []],
                         ["float"] * 3 + ["ScalarList"] * 3 + ["Scalar"],
                         ["", "", "", "[1, 1]", "[1, 1]", "[1, 1]", "32"])
    assert flops == 2 * 1 * 32 * 1 * 9 * 10 * 10


def test_conv_without_concrete_inputs_assumes_same_padding():
    flops, _ = costs.op_cost("aten::cudnn_convolution", [[32, 3, 224, 224], [64, 3, 7, 7]] + [[]] * 7,
                         ["float", "float"] + ["GenericList"] * 7)
    assert flops == 2 * 32 * 64 * 3 * 49 * 224 * 224


def test_conv_backward():
    dims = [[512, 512, 7, 7], [512, 512, 7, 7], [512, 512, 3, 3]] + [[]] * 8
    types = ["c10::BFloat16"] * 3 + ["ScalarList"] * 8
    fwd = 2 * 512 * 512 * 512 * 9 * 49
    both = ["", "", "", "[0]", "[1, 1]", "[1, 1]", "[1, 1]", "False", "[0, 0]", "1",
            "[True, True, False]"]
    input_only = both[:-1] + ["[True, False, False]"]
    assert costs.op_cost("aten::convolution_backward", dims, types, both)[0] == 2 * fwd
    assert costs.op_cost("aten::convolution_backward", dims, types, input_only)[0] == fwd
    # old cuDNN op: (input, grad_output, weight), no concrete inputs -> both gradients
    flops, _ = costs.op_cost("aten::cudnn_convolution_backward",
                         [[32, 512, 7, 7], [32, 2048, 7, 7], [2048, 512, 1, 1]] + [[]] * 8,
                         ["float"] * 3 + ["GenericList"] * 8)
    assert flops == 2 * (2 * 32 * 2048 * 512 * 49)
    # backward_weight without the weight size cannot be costed
    assert math.isnan(costs.op_cost("aten::cudnn_convolution_backward_weight",
                                [[], [32, 2048, 7, 7], [32, 512, 7, 7]],
                                ["GenericList", "float", "float"])[0])


def test_attention_layouts():
    b, h, lq, d = 16, 16, 559, 64
    want = 2 * b * h * lq * lq * (d + d)
    sdpa = costs.op_cost("aten::scaled_dot_product_attention", [[b, h, lq, d]] * 3 + [[]] * 5,
                     ["c10::BFloat16"] * 3 + [""] + ["Scalar"] * 4)
    flash = costs.op_cost("aten::_flash_attention_forward", [[b, lq, h, d]] * 3 + [[]] * 12,
                      ["c10::BFloat16"] * 3 + [""] * 12)
    assert sdpa[0] == flash[0] == want
    assert sdpa[1] == 4 * b * h * lq * d * 2
    bwd = costs.op_cost("aten::_scaled_dot_product_flash_attention_backward",
                    [[b, h, lq, d]] * 5 + [[b, h, lq]], ["c10::BFloat16"] * 5 + ["float"])
    assert bwd[0] == 2 * want


def test_elementwise_reduction_norm_and_free_ops():
    # broadcast add: output [64, 128] float
    assert costs.op_cost("aten::add", [[64, 128], [128], []], ["float", "float", "Scalar"]) == (
        64 * 128, (64 * 128 + 128 + 64 * 128) * 4)
    assert costs.op_cost("aten::mul_", [[1, 559, 64], []], ["c10::BFloat16", "Scalar"]) == (
        559 * 64, 2 * 559 * 64 * 2)
    # sum over dim 0 of [5, 128] -> 128 outputs
    assert costs.op_cost("aten::sum", [[5, 128], [], [], []], ["float", "ScalarList", "Scalar", ""],
                     ["", "[0]", "True", ""]) == (640, (640 + 128) * 4)
    assert costs.op_cost("aten::native_layer_norm", [[1, 141, 512], [], [512], [512], []],
                     ["c10::BFloat16", "ScalarList", "c10::BFloat16", "c10::BFloat16", "Scalar"]
                     ) == (5 * 141 * 512, (141 * 512 * 2 + 512 * 2) * 2)
    assert costs.op_cost("aten::_foreach_add_", [[[128, 128], [128]], [[128, 128], [128]], []],
                     ["TensorList", "TensorList", "Scalar"]) == (16512, 3 * 16512 * 4)
    assert costs.op_cost("aten::embedding", [[151936, 1024], [16, 559], [], [], []],
                     ["c10::BFloat16", "long int", "Scalar", "Scalar", "Scalar"]) == (
        0, 16 * 559 * 8 + 2 * 16 * 559 * 1024 * 2)
    assert costs.op_cost("aten::copy_", [[5, 128], [5, 128], []], ["c10::BFloat16", "float", "Scalar"]
                     ) == (0, 640 * 2 + 640 * 4)
    for free in ("aten::view", "aten::empty", "aten::t", "torch::autograd::AccumulateGrad",
                 "AddmmBackward0"):
        assert costs.op_cost(free, [[5, 128]], ["float"]) == (0.0, 0.0)
    assert all(math.isnan(v) for v in costs.op_cost("aten::mystery_op", [[4]], ["float"]))


@pytest.mark.parametrize("type_name,size", [
    ("float", 4), ("c10::Half", 2), ("c10::BFloat16", 2), ("double", 8), ("long int", 8),
    ("signed char", 1), ("unsigned char", 1), ("c10::Float8_e4m3fn", 1), ("bool", 1),
    ("int", 4), ("Scalar", 0), ("GenericList", 0)])
def test_dtype_bytes(type_name, size):
    assert costs.dtype_bytes(type_name) == size


def test_unknown_tensor_type_is_an_error_and_op_cost_nan():
    with pytest.raises(DaydreamError):
        costs.dtype_bytes("c10::Float13")
    assert math.isnan(costs.op_cost("aten::mm", [[2, 2], [2, 2]], ["c10::Float13"] * 2)[0])


def test_compute_dtype():
    assert costs.compute_dtype(["long int", "c10::BFloat16"]) == "bf16"
    assert costs.compute_dtype(["float", "Scalar"]) == "fp32"
    assert costs.compute_dtype(["c10::Float8_e4m3fn"]) == "fp8"
    assert costs.compute_dtype(["signed char"]) == "int8"
    assert costs.compute_dtype([]) == "fp32"


def test_matches_torch_flop_counter():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    def count(fn):
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops()

    def meta(*shape, grad=False):
        return torch.empty(*shape, device="meta", requires_grad=grad)

    assert costs.op_cost("aten::mm", [[48, 40], [40, 24]], ["float"] * 2)[0] == \
        count(lambda: torch.mm(meta(48, 40), meta(40, 24)))
    assert costs.op_cost("aten::bmm", [[3, 48, 40], [3, 40, 24]], ["float"] * 2)[0] == \
        count(lambda: torch.bmm(meta(3, 48, 40), meta(3, 40, 24)))
    assert costs.op_cost("aten::addmm", [[24], [48, 40], [40, 24], [], []],
                     ["float"] * 3 + ["Scalar"] * 2)[0] == \
        count(lambda: torch.addmm(meta(24), meta(48, 40), meta(40, 24)))
    conv_dims = [[2, 6, 17, 17], [8, 3, 3, 3], [8], [], [], [], []]
    conv_types = ["float"] * 3 + ["ScalarList"] * 3 + ["Int"]
    assert costs.op_cost("aten::conv2d", conv_dims, conv_types,
                     ["", "", "", "[2, 2]", "[1, 1]", "[1, 1]", "2"])[0] == \
        count(lambda: F.conv2d(meta(2, 6, 17, 17), meta(8, 3, 3, 3), meta(8), stride=2,
                               padding=1, groups=2))
    x, w = meta(2, 3, 16, 16, grad=True), meta(8, 3, 3, 3, grad=True)
    total = count(lambda: F.conv2d(x, w, padding=1).sum().backward())
    fwd = costs.op_cost("aten::conv2d", [[2, 3, 16, 16], [8, 3, 3, 3]] + [[]] * 5,
                    ["float"] * 2 + ["", "ScalarList", "ScalarList", "ScalarList", "Int"],
                    ["", "", "", "[1, 1]", "[1, 1]", "[1, 1]", "1"])[0]
    bwd = costs.op_cost("aten::convolution_backward",
                    [[2, 8, 16, 16], [2, 3, 16, 16], [8, 3, 3, 3]] + [[]] * 8,
                    ["float"] * 3 + ["ScalarList"] * 8,
                    ["", "", "", "[8]", "[1, 1]", "[1, 1]", "[1, 1]", "False", "[0, 0]", "1",
                     "[True, True, False]"])[0]
    assert bwd == 2 * fwd and total == fwd + bwd  # forward, then input and weight gradients
    q = meta(2, 4, 128, 64)
    assert costs.op_cost("aten::scaled_dot_product_attention", [[2, 4, 128, 64]] * 3,
                     ["float"] * 3)[0] == \
        count(lambda: F.scaled_dot_product_attention(q, q, q))


def test_op_costs_on_a_real_trace_matches_rowwise():
    ops = [e for e in _events("tracelens/gaunernst_bert-small-uncased_h100.json.gz")
           if e.get("cat") == "cpu_op" and "Input Dims" in e.get("args", {})]
    names = [e["name"] for e in ops]
    dims = [e["args"]["Input Dims"] for e in ops]
    types = [e["args"]["Input type"] for e in ops]
    concrete = [e["args"].get("Concrete Inputs") for e in ops]
    flops, bytes_ = costs.op_costs(names, dims, types, concrete)
    rowwise = [costs.op_cost(*row) for row in zip(names, dims, types, concrete)]
    np.testing.assert_array_equal(flops, [r[0] for r in rowwise])
    np.testing.assert_array_equal(bytes_, [r[1] for r in rowwise])
    by_name = pd.DataFrame({"name": names, "flops": flops}).groupby("name")["flops"].sum()
    # bert-small masked-LM over 141 tokens: 4 layers x (Q, K, V, out) 512x512 + the head's
    # 512x512 transform = 17; 4 FFN up 512x2048 and down 2048x512; the 512x30522 decoder
    tokens = 141
    assert by_name["aten::addmm"] == 2 * tokens * (17 * 512 * 512 + 8 * 512 * 2048
                                                   + 512 * 30522)
    assert by_name["aten::_flash_attention_forward"] > 0


# ------------------------------------------------------------------ roofline
def test_roofline_formula():
    h100 = hw.lookup("H100")
    assert costs.roofline(989.4e12, 0, h100, "bf16") == pytest.approx(1.0)
    assert costs.roofline(0, 3.35e12, h100, "bf16") == pytest.approx(1.0)
    assert costs.roofline(989.4e12, 2 * 3.35e12, h100, "bf16") == pytest.approx(2.0)
    assert costs.bound(989.4e12, 1e12, h100, "bf16") == "compute"
    assert costs.bound(1e9, 1e9, h100, "bf16") == "memory"
    # V100 has no bf16 unit: it runs at the fp32 rate
    v100 = hw.lookup("V100")
    assert costs.roofline(15.7e12, 0, v100, "bf16") == pytest.approx(1.0)


def test_roofline_vectorized():
    a100 = hw.lookup("A100")
    flops = np.array([312e12, 19.5e12, 0.0])
    bytes_ = np.array([0.0, 0.0, 2039e9])
    t = costs.roofline(flops, bytes_, a100, np.array(["bf16", "fp32", "fp32"], dtype=object))
    np.testing.assert_allclose(t, [1.0, 1.0, 1.0])
    assert list(costs.bound(flops, bytes_, a100, "fp32")) == ["compute", "compute", "memory"]


@pytest.mark.parametrize("name,dims,types", [
    ("aten::mm", None, None), ("aten::conv2d", [[1]], ["float"]),
    ("aten::mm", [[10**400, 2], [2, 2]], ["float", "float"]),
    ("aten::scaled_dot_product_attention", [[2, 3]] * 3, ["float"] * 3),
    ("aten::add", [["a"], [2]], ["float", "float"]), ("aten::sum", [[3]], [7]),
])
def test_op_cost_never_raises_on_malformed_shapes(name, dims, types):
    flops, bytes_ = costs.op_cost(name, dims, types)
    assert isinstance(flops, float) and isinstance(bytes_, float)
