"""Hardware facts the cost models need, in one table, each number with its source.

Every what-if prediction divides work by a rate from this table (peak FLOP/s, memory bandwidth,
link bandwidth) or adds a fixed cost from it (kernel launch, link latency), so every number here
names where it comes from. Conventions:

* FLOP/s are dense peaks (no 2:4 sparsity) for the whole device as the framework sees it
  (an MI250 is two devices to ROCm, so there are per-GCD entries). 0.0 means the device has no
  hardware path for that dtype; `effective_peak` then falls back to the dtype it is emulated in.
* Bandwidths are bytes/s. Link bandwidths are per GPU and per direction (datasheets quote the
  sum of both directions: NVLink "600 GB/s" is 300 GB/s each way).
* Memory capacities are the datasheet "GB" read as GiB (2**30 bytes), which is what the cards
  expose (an "80GB" H100 reports 85 018 279 936 bytes of 85 899 345 920).
* Launch costs are measured from the real traces under ../shared/traces (median cudaLaunchKernel /
  hipLaunchKernel API duration -- for H100 and MI300X the median over several traces, see
  LAUNCH_CALL_S -- and median gap from the end of that call to the kernel's start while the GPU
  was idle); devices without a trace borrow the closest architecture's values.
* Link latencies are NCCL's own model constants (src/graph/tuning.cc, hwLat, Ring/Simple per
  step: NVLink 3.4 us, PCIe 5.7 us, network 9.6 us; baseLat Ring/Simple 8.4 us per collective).
  RCCL keeps NCCL's tuning model, so xGMI uses the NVLink value.
"""
from __future__ import annotations

import ast
import contextvars
import dataclasses
import re
from dataclasses import dataclass, field

from daydream.errors import DaydreamError

GIB = 2**30
T = 1e12  # TFLOP/s -> FLOP/s
GB = 1e9  # GB/s -> bytes/s
US = 1e-6

DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4")

# Where a device has no unit for a dtype, frameworks run it in (or refuse it for) the next one:
# bf16/fp16 on pre-tensor-core parts run at fp32 rate, fp8 runs as fp16 where absent, etc.
FALLBACK = {"tf32": "fp32", "bf16": "fp32", "fp16": "fp32", "fp8": "fp16", "int8": "fp32",
            "int4": "int8", "fp4": "fp8", "fp64": "fp32"}

# NCCL src/graph/tuning.cc: baseLat[Ring][Simple], the fixed cost of one collective launch.
COLLECTIVE_BASE_LATENCY_S = 8.4 * US
# NCCL src/graph/tuning.cc hwLat[*][Ring][Simple]: per ring step over each link type.
NVLINK_STEP_LATENCY_S = 3.4 * US
PCIE_STEP_LATENCY_S = 5.7 * US
NET_STEP_LATENCY_S = 9.6 * US

# PCIe x16 per direction (PCI-SIG: 8/16/32 GT/s per lane, 128b/130b): datasheets round to these.
PCIE_BW = {3: 16 * GB, 4: 32 * GB, 5: 64 * GB}


@dataclass(frozen=True)
class Device:
    """One accelerator (or CPU socket) as the simulator sees it."""

    name: str
    family: str                     # what tests and reports group by: "V100", "A100", "MI250" ...
    vendor: str                     # "nvidia" | "amd" | "cpu"
    arch: str                       # "sm_80", "gfx942", "x86_64"
    peak_flops: dict = field(compare=False)  # dtype -> dense FLOP/s (0.0: no hardware path)
    mem_bw: float                   # bytes/s, DRAM/HBM peak
    mem_bytes: float                # capacity
    sm_count: int                   # SMs (NVIDIA), CUs (AMD), cores (CPU)
    launch_cpu_s: float             # host time of one kernel-launch API call
    launch_gpu_s: float             # launch call end -> kernel start on an idle GPU
    intra_link: str                 # GPU-GPU inside a node
    intra_bw: float                 # bytes/s per GPU per direction
    intra_latency_s: float          # per hop (NCCL hwLat)
    pcie_gen: int
    pcie_bw: float                  # bytes/s per direction, host <-> device
    inter_link: str                 # node-to-node fabric of the vendor's reference system
    inter_bw: float                 # bytes/s per GPU per direction
    inter_latency_s: float
    compute_capability: tuple = ()  # (major, minor) as CUDA/HIP report it
    aliases: tuple = ()
    # Regexes on the normalised name (see _match) -> preference among the devices sharing that
    # pattern (0: the default variant where neither memory nor a size in the name decides).
    patterns: dict = field(default_factory=dict, compare=False)

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for dtype, following FALLBACK where the device has no unit for it."""
        return effective_peak(self, dtype)


def effective_peak(device: Device, dtype: str) -> float:
    seen = set()
    key = dtype
    while key not in seen:
        seen.add(key)
        rate = device.peak_flops.get(key, 0.0) or 0.0
        if rate > 0:
            return float(rate)
        key = FALLBACK.get(key, "fp32")
    raise DaydreamError(f"device {device.name} has no peak FLOP/s for {dtype}")


def _flops(**tflops) -> dict:
    unknown = set(tflops) - set(DTYPES)
    assert not unknown, unknown
    return {d: float(tflops.get(d) or 0.0) * T for d in DTYPES}


def _nvlink(gen: int, links: int) -> float:
    # NVLink 2.0-4.0: 25 GB/s per link per direction (Volta/Ampere/Hopper whitepapers).
    return links * 25 * GB


# --- launch costs measured from ../shared/traces (see module docstring; test_hardware rechecks) --
# V100: kineto/resnet50_v100_num_workers_0 (8772 launches: median 9.0 us; idle gap 3.0 us, n=1471)
_V100_LAUNCH = (9.0 * US, 3.0 * US)
# A100: hta/nccl_2rank_a100_rank0 (2700 launches: median 9.71 us; idle gap 1.55 us, n=1542)
_A100_LAUNCH = (9.71 * US, 1.55 * US)
# RTX 2080 Ti: param/resnet_2080ti (9628 launches: median 9.0 us). Its idle gaps read <= 0 us
# (CPU/GPU clock skew in that trace), so the GPU-side latency is the V100 measurement.
_TURING_LAUNCH = (9.0 * US, _V100_LAUNCH[1])
# H100 and MI300X, the API call: LAUNCH_CALL_S below (median over the device's traces). GPU side:
# H100 tracelens/Qwen_Qwen1.5-0.5B-Chat_h100 (idle gap 1.39 us); MI300X
# tracelens/ddp_resnet18_train_mi300 (idle gap 9.28 us, n=688).
# LAUNCH_CALL_S[family]: host time of one kernel-launch API call, every entry point (cudaLaunchKernel,
# cudaLaunchKernelExC, cuLaunchKernel / hipLaunchKernel, hipExtModuleLaunchKernel,
# hipModuleLaunchKernel), as the median over the device's shared traces of each trace's median
# (`python benchmarks/fit_gpu_efficiency.py`): H100 tracelens bert-small 4.93 us (60 launches),
# Qwen1.5-0.5B 3.33 us (1029) -> 4.13 us; MI300X tracelens bert-small 3.91 us (60), Qwen1.5-0.5B
# 4.52 us (1053), ddp_resnet18 3.13 us (2360) -> 3.91 us. The spread between traces of one device
# (H100 3.33-4.93, MI300X 3.13-4.52) is wider than the gap between CUDA and HIP (4.13 vs 3.91):
# a launch call's cost follows the host it was recorded on as much as the runtime (docs/hardware.md).
LAUNCH_CALL_S = {"H100": 4.13 * US, "MI300X": 3.91 * US}
_H100_LAUNCH = (LAUNCH_CALL_S["H100"], 1.39 * US)
_MI300_LAUNCH = (LAUNCH_CALL_S["MI300X"], 9.28 * US)
# MI250: hta/minitoy_train_mi250 (14 launches: median 6.26 us; idle gap 6.74 us)
_MI250_LAUNCH = (6.26 * US, 6.74 * US)


def _nvidia(name, family, arch, cc, flops, mem_bw, mem_gib, sms, launch, intra_link, intra_bw,
            pcie_gen, inter_link, inter_bw, aliases=(), patterns=None):
    on_nvlink = intra_link.startswith("NVLink")
    return Device(name=name, family=family, vendor="nvidia", arch=arch, peak_flops=flops,
                  mem_bw=mem_bw, mem_bytes=mem_gib * GIB, sm_count=sms, launch_cpu_s=launch[0],
                  launch_gpu_s=launch[1], intra_link=intra_link, intra_bw=intra_bw,
                  intra_latency_s=NVLINK_STEP_LATENCY_S if on_nvlink else PCIE_STEP_LATENCY_S,
                  pcie_gen=pcie_gen, pcie_bw=PCIE_BW[pcie_gen], inter_link=inter_link,
                  inter_bw=inter_bw, inter_latency_s=NET_STEP_LATENCY_S, compute_capability=cc,
                  aliases=aliases, patterns=patterns or {})


def _amd(name, family, arch, cc, flops, mem_bw, mem_gib, cus, launch, intra_bw, pcie_gen,
         inter_link, inter_bw, aliases=(), patterns=None):
    return Device(name=name, family=family, vendor="amd", arch=arch, peak_flops=flops,
                  mem_bw=mem_bw, mem_bytes=mem_gib * GIB, sm_count=cus, launch_cpu_s=launch[0],
                  launch_gpu_s=launch[1], intra_link="xGMI (Infinity Fabric)", intra_bw=intra_bw,
                  intra_latency_s=NVLINK_STEP_LATENCY_S, pcie_gen=pcie_gen,
                  pcie_bw=PCIE_BW[pcie_gen], inter_link=inter_link, inter_bw=inter_bw,
                  inter_latency_s=NET_STEP_LATENCY_S, compute_capability=cc, aliases=aliases,
                  patterns=patterns or {})


# Generic x86 server socket (the "cpu" entry): per core 2 x 256-bit FMA units (AVX2) = 32 fp32 /
# 16 fp64 FLOP per cycle (Intel 64 and IA-32 Optimization Reference Manual, FMA throughput) at an
# assumed 2.5 GHz all-core clock; 8 channels of DDR4-3200 at 25.6 GB/s each (JEDEC JESD79-4).
CPU_GHZ = 2.5
CPU_FP32_FLOP_PER_CYCLE = 32
CPU_MEM_BW = 8 * 25.6 * GB


def cpu_device(cores: int = 32) -> Device:
    """A generic x86 server CPU with `cores` cores; bf16/fp16 run at the fp32 rate (no AMX)."""
    if cores < 1:
        raise DaydreamError(f"cpu core count must be at least 1, got {cores}")
    fp32 = cores * CPU_GHZ * 1e9 * CPU_FP32_FLOP_PER_CYCLE
    flops = {d: 0.0 for d in DTYPES}
    # int8 (u8 x s8, the fbgemm dynamic-quantization path): VPMADDUBSW does 32 multiply-adds per
    # 256-bit instruction, two per cycle (ports 0 and 1; A. Fog, "Instruction tables", Skylake and
    # Zen 2) = 128 int8 ops per cycle, 4x the fp32 FMA rate.
    flops.update(fp32=fp32, fp64=fp32 / 2, int8=4 * fp32)
    return Device(name="cpu" if cores == 32 else f"cpu:{cores}", family="CPU", vendor="cpu",
                  arch="x86_64", peak_flops=flops, mem_bw=CPU_MEM_BW, mem_bytes=256 * GIB,
                  sm_count=cores, launch_cpu_s=0.0, launch_gpu_s=0.0,
                  intra_link="shared memory", intra_bw=CPU_MEM_BW / 2, intra_latency_s=1 * US,
                  pcie_gen=4, pcie_bw=PCIE_BW[4],
                  # gloo over TCP on a 100 GbE NIC (IEEE 802.3ba), per host
                  inter_link="Ethernet 100 GbE", inter_bw=12.5 * GB,
                  inter_latency_s=NET_STEP_LATENCY_S, aliases=("x86", "xeon", "epyc", "host"),
                  patterns={r"^(cpu|x86|x86 64|host)$|\bxeon\b|\bepyc\b": 0})


# ----------------------------------------------------------------------------------------------
# THE TABLE. One `_add(...)` per device: name, family, peaks, links, aliases, name patterns, and its
# sources in the comment above the figures; rates in TFLOP/s, bandwidths in GB/s (converted on
# construction). The order is that of `names()` and breaks ties in `_by_capability`.
# ----------------------------------------------------------------------------------------------
_TABLE: list[Device] = []


def _add(device: Device) -> Device:
    _TABLE.append(device)
    return device


_V100_SXM2 = _add(_nvidia(
    # NVIDIA Tesla V100 datasheet (SXM2): 7.8 FP64, 15.7 FP32, 125 Tensor (fp16) TFLOPS; HBM2
    # 900 GB/s; 80 SMs (Volta whitepaper). NVLink 2.0: 6 links, 300 GB/s total. DGX-1V
    # datasheet: 4x EDR InfiniBand (100 Gb/s) for 8 GPUs -> 6.25 GB/s per GPU.
    "V100-SXM2-32GB", "V100", "sm_70", (7, 0),
    _flops(fp64=7.8, fp32=15.7, fp16=125), 900 * GB, 32, 80, _V100_LAUNCH,
    "NVLink 2.0", _nvlink(2, 6), 3, "InfiniBand EDR", 6.25 * GB,
    aliases=("v100", "tesla v100 sxm2 32gb", "v100 sxm2", "tesla v100 dgxs 32gb", "v100 dgxs",
             "v100 sxm3 32gb"),
    patterns={r"\bv100": 0}))
_V100_SXM2_16 = _add(dataclasses.replace(_V100_SXM2, name="V100-SXM2-16GB", mem_bytes=16 * GIB,
                                         aliases=("tesla v100 sxm2 16gb", "v100 sxm2 16gb"),
                                         patterns={r"\bv100": 1}))
_V100_PCIE = _add(dataclasses.replace(
    # NVIDIA Tesla V100 datasheet (PCIe): 7 FP64, 14 FP32, 112 Tensor TFLOPS; 900 GB/s; no NVLink
    _V100_SXM2, name="V100-PCIe-32GB", peak_flops=_flops(fp64=7.0, fp32=14.0, fp16=112),
    intra_link="PCIe 3.0", intra_bw=PCIE_BW[3], intra_latency_s=PCIE_STEP_LATENCY_S,
    aliases=("v100 pcie", "tesla v100 pcie 32gb", "v100 pcie 32gb"), patterns={r"\bv100\b.*\bpcie\b": 0}))
_V100_PCIE_16 = _add(dataclasses.replace(_V100_PCIE, name="V100-PCIe-16GB", mem_bytes=16 * GIB,
                                         aliases=("tesla v100 pcie 16gb", "v100 pcie 16gb"),
                                         patterns={r"\bv100\b.*\bpcie\b": 1}))

_T4 = _add(_nvidia(
    # NVIDIA T4 datasheet: 8.1 FP32, 65 FP16/FP32 mixed, 130 INT8, 260 INT4 TFLOPS/TOPS; 16 GB
    # GDDR6 at 320 GB/s; PCIe Gen3 x16; 40 SMs (Turing whitepaper, TU104 in T4). No NVLink.
    "T4", "T4", "sm_75", (7, 5),
    _flops(fp32=8.1, fp16=65, int8=130, int4=260), 320 * GB, 16, 40, _TURING_LAUNCH,
    "PCIe 3.0", PCIE_BW[3], 3, "InfiniBand EDR (assumed, no reference system)", 12.5 * GB,
    aliases=("tesla t4", "nvidia t4"), patterns={r"\bt4\b": 0}))

_RTX_2080TI = _add(_nvidia(
    # NVIDIA Turing architecture whitepaper, Table "GeForce RTX 2080 Ti" (reference clocks):
    # 13.4 FP32 TFLOPS; 53.8 FP16 tensor TFLOPS with FP32 accumulate (what cuBLAS/PyTorch use;
    # 107.6 with FP16 accumulate); 215.2 INT8 / 430.3 INT4 TOPS; 11 GB GDDR6 at 616 GB/s; 68 SMs.
    # NVLink bridge: 2 links, 100 GB/s total.
    "RTX 2080 Ti", "RTX 2080 Ti", "sm_75", (7, 5),
    _flops(fp32=13.4, fp16=53.8, int8=215.2, int4=430.3), 616 * GB, 11, 68, _TURING_LAUNCH,
    "NVLink 2.0 bridge", _nvlink(2, 2), 3, "InfiniBand EDR (assumed, no reference system)",
    12.5 * GB, aliases=("2080 ti", "2080ti", "geforce rtx 2080 ti", "rtx 2080ti"),
    patterns={r"\b2080\s?ti\b": 0}))

_A100_40 = _add(_nvidia(
    # NVIDIA A100 Tensor Core GPU datasheet: 9.7 FP64 (19.5 FP64 tensor), 19.5 FP32, 156 TF32,
    # 312 BF16/FP16, 624 INT8 (dense); INT4 1248 TOPS (Ampere GA100 whitepaper). 40GB HBM2 at
    # 1555 GB/s; 108 SMs. NVLink 3.0: 12 links, 600 GB/s total; PCIe Gen4. DGX A100 datasheet:
    # 8x HDR InfiniBand 200 Gb/s, one per GPU -> 25 GB/s.
    "A100-SXM4-40GB", "A100", "sm_80", (8, 0),
    _flops(fp64=19.5, fp32=19.5, tf32=156, bf16=312, fp16=312, int8=624, int4=1248),
    1555 * GB, 40, 108, _A100_LAUNCH, "NVLink 3.0", _nvlink(3, 12), 4, "InfiniBand HDR",
    25 * GB, aliases=("a100 40gb", "a100 sxm4 40gb", "a100 pg509 200", "a100 40"),
    patterns={r"\ba100\b": 1}))
_A100_80 = _add(dataclasses.replace(
    # A100 datasheet, 80GB SXM: HBM2e at 2039 GB/s; compute unchanged.
    _A100_40, name="A100-SXM4-80GB", mem_bw=2039 * GB, mem_bytes=80 * GIB,
    aliases=("a100", "a100 80gb", "a100 sxm4 80gb", "a100 80"), patterns={r"\ba100\b": 0}))

_H100_SXM = _add(_nvidia(
    # NVIDIA H100 Tensor Core GPU datasheet (SXM), dense = half the quoted sparse figures:
    # 67 FP64 tensor, 67 FP32, 494.7 TF32, 989.4 BF16/FP16, 1978.9 FP8, 1978.9 INT8; 80GB HBM3 at
    # 3.35 TB/s; 132 SMs (Hopper whitepaper). NVLink 4.0: 18 links, 900 GB/s total; PCIe Gen5.
    # DGX H100 datasheet: 8x ConnectX-7 NDR 400 Gb/s -> 50 GB/s per GPU.
    "H100-SXM5-80GB", "H100", "sm_90", (9, 0),
    _flops(fp64=67, fp32=67, tf32=494.7, bf16=989.4, fp16=989.4, fp8=1978.9, int8=1978.9),
    3350 * GB, 80, 132, _H100_LAUNCH, "NVLink 4.0", _nvlink(4, 18), 5, "InfiniBand NDR",
    50 * GB, aliases=("h100", "h100 80gb hbm3", "h100 sxm", "h100 sxm5", "h100 sxm5 80gb"),
    patterns={r"\bh100\b": 0}))
_H100_PCIE = _add(dataclasses.replace(
    # H100 datasheet (PCIe): 51 FP32, 756 BF16/FP16, 1513 FP8/INT8 dense; 80GB HBM2e at 2 TB/s;
    # 114 SMs; NVLink bridge 600 GB/s total.
    _H100_SXM, name="H100-PCIe-80GB",
    peak_flops=_flops(fp64=51, fp32=51, tf32=378, bf16=756, fp16=756, fp8=1513, int8=1513),
    mem_bw=2000 * GB, sm_count=114, intra_link="NVLink 4.0 bridge", intra_bw=_nvlink(4, 12),
    aliases=("h100 pcie", "h100 pcie 80gb"), patterns={r"\bh100\b.*\bpcie\b": 0}))

_H200 = _add(dataclasses.replace(
    # NVIDIA H200 Tensor Core GPU datasheet (SXM): compute as H100 SXM; 141GB HBM3e at 4.8 TB/s;
    # NVLink 900 GB/s; DGX H200: 8x NDR 400 Gb/s.
    _H100_SXM, name="H200-SXM-141GB", family="H200", mem_bw=4800 * GB, mem_bytes=141 * GIB,
    aliases=("h200", "h200 sxm", "h200 141gb", "h200 141gb hbm3e"),
    patterns={r"\bh200\b": 0, r"\bh100\b": 1}))  # an "H100" reporting 141 GB is an H200

_B200 = _add(_nvidia(
    # NVIDIA DGX B200 / HGX B200 datasheets, per GPU (1000 W), dense: 40 FP64, 80 FP32 (vector),
    # 1100 TF32, 2250 BF16/FP16, 4500 FP8, 4500 INT8, 9000 FP4; DGX B200: 1440 GB HBM3e and
    # 64 TB/s for 8 GPUs -> 180 GB, 8 TB/s each. 148 SMs (CUDA device query, sm_100). NVLink 5:
    # 1.8 TB/s total; PCIe Gen5; 8x ConnectX-7 400 Gb/s.
    "B200", "B200", "sm_100", (10, 0),
    _flops(fp64=40, fp32=80, tf32=1100, bf16=2250, fp16=2250, fp8=4500, int8=4500, fp4=9000),
    8000 * GB, 180, 148, _H100_LAUNCH, "NVLink 5.0", 900 * GB, 5, "InfiniBand NDR", 50 * GB,
    aliases=("b200", "nvidia b200", "hgx b200", "dgx b200"), patterns={r"\bb200\b": 0}))

_MI250X = _add(_amd(
    # AMD Instinct MI250X datasheet (OAM, 2 GCDs): 47.9 FP64/FP32 vector, 95.7 FP32/FP64 matrix
    # (rocBLAS runs fp32 GEMMs on the matrix cores), 383 FP16/BF16, 383 INT8/INT4; 128GB HBM2e
    # at 3.2 TB/s; 220 CUs. 8 Infinity Fabric links x 50 GB/s per direction (ROCm docs, "MI250
    # microarchitecture": 25 GT/s x16); PCIe Gen4. Frontier node (HPE Cray EX235a): 4 Slingshot
    # 200 Gb/s NICs for 4 OAMs -> 25 GB/s per OAM.
    "MI250X", "MI250X", "gfx90a", (9, 0),
    _flops(fp64=95.7, fp32=95.7, bf16=383, fp16=383, int8=383, int4=383), 3200 * GB, 128, 220,
    _MI250_LAUNCH, 8 * 50 * GB, 4, "Slingshot 200 Gb/s", 25 * GB,
    aliases=("instinct mi250x", "mi250x oam"), patterns={r"\bmi250x": 1}))
_MI250 = _add(_amd(
    # AMD Instinct MI250 datasheet (OAM, 2 GCDs): 45.3 FP64/FP32 vector, 90.5 matrix, 362.1
    # FP16/BF16/INT8/INT4; 128GB HBM2e at 3.2 TB/s; 208 CUs; 6 Infinity Fabric links.
    "MI250", "MI250", "gfx90a", (9, 0),
    _flops(fp64=90.5, fp32=90.5, bf16=362.1, fp16=362.1, int8=362.1, int4=362.1), 3200 * GB,
    128, 208, _MI250_LAUNCH, 6 * 50 * GB, 4, "InfiniBand HDR", 25 * GB,
    aliases=("instinct mi250", "mi250 oam"), patterns={r"\bmi250\b": 1}))


def _gcd(oam: Device, name: str, aliases: tuple, patterns: dict) -> Device:
    """ROCm shows each of the two dies of an MI250(X) as its own device: half of everything
    (ROCm docs "MI250 microarchitecture": 104 CUs, 64 GB and 1.6 TB/s per MI250 GCD)."""
    return dataclasses.replace(
        oam, name=name, peak_flops={d: r / 2 for d, r in oam.peak_flops.items()},
        mem_bw=oam.mem_bw / 2, mem_bytes=oam.mem_bytes / 2, sm_count=oam.sm_count // 2,
        intra_bw=oam.intra_bw / 2, inter_bw=oam.inter_bw / 2, aliases=aliases, patterns=patterns)


# One MI250 GCD is spec-for-spec an MI210 (104 CUs, 64 GB, 1.6 TB/s, 181 FP16 TFLOPS).
# ROCm names a GCD after its package (or its gfx target): the GCD is the default variant.
_MI250X_GCD = _add(_gcd(_MI250X, "MI250X-GCD", ("mi250x gcd",), {r"\bmi250x": 0, r"\bgfx90a\b": 1}))
_MI250_GCD = _add(_gcd(_MI250, "MI250-GCD", ("mi250 gcd", "mi210", "instinct mi210"),
                       {r"\bmi250\b": 0, r"\bmi210\b": 0, r"\bgfx90a\b": 0}))

_MI300X = _add(_amd(
    # AMD Instinct MI300X datasheet (dense): 81.7 FP64 vector, 163.4 FP32, 653.7 TF32, 1307.4
    # FP16/BF16, 2614.9 FP8/INT8; 192GB HBM3 at 5.3 TB/s; 304 CUs. 7 Infinity Fabric links,
    # 896 GB/s total (448 each way); PCIe Gen5 x16. Reference platforms: one 400 Gb/s NIC per GPU.
    "MI300X", "MI300X", "gfx942", (9, 4),
    _flops(fp64=163.4, fp32=163.4, tf32=653.7, bf16=1307.4, fp16=1307.4, fp8=2614.9,
           int8=2614.9), 5300 * GB, 192, 304, _MI300_LAUNCH, 448 * GB, 5,
    "InfiniBand NDR / 400G RoCE", 50 * GB,
    aliases=("mi300", "instinct mi300x", "mi300x vf", "instinct mi300x vf", "mi300x oam"),
    patterns={r"\bmi300": 0, r"\bgfx942\b": 0}))

_CPU = _add(cpu_device(32))

DEVICES: dict[str, Device] = {d.name: d for d in _TABLE}

# --- per-kernel-class efficiencies and kernel floors (the cross-GPU model, daydream/opts/gpu.py) --
# KERNEL_FLOOR_S: what an almost empty kernel costs on the device (launch-to-retire on the GPU):
# the lowest 5th percentile of kernel durations over the shared traces of that device. H100:
# tracelens bert-small 1.63 us, Qwen1.5-0.5B 1.60 us. MI300X: tracelens bert-small 2.08 us
# (ddp_resnet18 2.68 us, Qwen1.5-0.5B 4.57 us: their shortest kernels still carry work).
# Devices without a trace keep the floor of the trace being transformed.
KERNEL_FLOOR_S = {"H100": 1.60 * US, "H200": 1.60 * US, "MI300X": 2.08 * US}

# FITTED, not cited: no published per-class table covers both devices. Produced by
# `python benchmarks/fit_gpu_efficiency.py` from the op shapes of the shared traces (H100:
# tracelens bert-small + Qwen1.5-0.5B; MI300X: the same two plus ddp_resnet18 training), the
# same traces the cross-GPU pairs are validated on: docs/validation.md says which figures hold
# when the pair being predicted is left out of the fit.
#
# MEMORY_LINE[family] = (fixed seconds, bandwidth efficiency): a memory-bound kernel moving B
# bytes takes fixed + B / (efficiency * mem_bw), least squares over the single-kernel elementwise
# ops of the device's traces (H100: 558 ops, 7.44 us + B / (0.902 x 3.35 TB/s); MI300X: 962 ops,
# 6.26 us + B / (0.857 x 5.3 TB/s); without the Qwen traces MI300X gives 6.13 us and 0.857 from
# 399 ops, H100 has too few ops left to fit). Kernels shorter than `fixed` are mapped floor to
# floor (daydream/opts/gpu.py).
MEMORY_LINE = {"H100": (7.44 * US, 0.902), "H200": (7.44 * US, 0.902), "MI300X": (6.26 * US, 0.857)}
# CLASS_EFFICIENCY[family][class]: the fraction of the roofline at the achievable matmul rate
# (opts/_cost.MATMUL_EFFICIENCY x peak, spec bandwidth) that GEMM, convolution and attention
# kernels reach on real work, the kernel floor excluded (time-weighted over op calls; an op whose
# roofline time is under one kernel floor is left out: its time is the kernel's fixed cost, which
# leaves bert-small's GEMMs and attention out). H100 has no convolution in its traces, so conv
# keeps the spec ratio between H100 and MI300X. Out of sample (each pair left out of the fit):
# docs/validation.md, `benchmarks/gpu_validation.py`.
CLASS_EFFICIENCY = {
    "H100": {"gemm": 0.818, "attention": 0.230},
    "MI300X": {"gemm": 0.727, "conv": 0.271, "attention": 0.189},
}
CLASS_EFFICIENCY["H200"] = CLASS_EFFICIENCY["H100"]  # same SMs and kernels; H200 only has faster HBM


def names() -> list[str]:
    """Canonical names of every device in the table."""
    return list(DEVICES)


# Words vendors put around the model name that say nothing about which model it is.
_NOISE = re.compile(r"\b(nvidia|amd|tesla|geforce|instinct|radeon|graphics|corporation)\b")


def _normalize(text: str) -> str:
    text = re.sub(r"[^a-z0-9]+", " ", str(text).lower())
    return " ".join(_NOISE.sub(" ", text).split())


_BY_ALIAS: dict[str, Device] = {}
for _d in _TABLE:
    for _key in (_d.name, *_d.aliases):
        _BY_ALIAS.setdefault(_normalize(_key), _d)

# Family patterns from the entries: each pattern with the devices that name it, default first.
_FAMILY_PATTERNS: dict[str, tuple[Device, ...]] = {}
for _d in _TABLE:
    for _pattern in _d.patterns:
        _FAMILY_PATTERNS[_pattern] = _FAMILY_PATTERNS.get(_pattern, ()) + (_d,)
_FAMILY_PATTERNS = {re.compile(p): tuple(sorted(devs, key=lambda d: d.patterns[p]))
                    for p, devs in _FAMILY_PATTERNS.items()}


def _family(key: str) -> tuple[Device, ...] | None:
    """The devices of the pattern that explains the most of the name: "h100 pcie" is an H100
    PCIe before it is an H100, "mi250x mi250" (ROCm's name for that card) an MI250X."""
    best, best_len = None, -1
    for pattern, candidates in _FAMILY_PATTERNS.items():
        m = pattern.search(key)
        if m and m.end() - m.start() > best_len:  # a tie goes to the earlier entry
            best, best_len = candidates, m.end() - m.start()
    return best


def _closest_memory(candidates: tuple[Device, ...], mem_bytes: float | None) -> Device:
    if not mem_bytes:
        return candidates[0]
    return min(candidates, key=lambda d: abs(d.mem_bytes - mem_bytes))


def _match(name: str, mem_bytes: float | None = None) -> Device | None:
    """Table entry for a device name; `mem_bytes` (what the card reported) picks the variant."""
    key = _normalize(name)
    cpu = re.fullmatch(r"cpu (\d+)", key)
    if cpu:
        return cpu_device(int(cpu.group(1)))
    exact = _BY_ALIAS.get(key)
    candidates = _family(key)
    if candidates is None:
        return exact
    if mem_bytes is not None:
        return _closest_memory(candidates, mem_bytes)
    if exact is not None:
        return exact
    sized = [d for d in candidates if re.search(rf"\b{int(d.mem_bytes / GIB)}\s?gb?\b", key)]
    return sized[0] if sized else candidates[0]


def lookup(name: str) -> Device:
    """The device called `name`, tolerant of case, vendor words and punctuation
    ("H100", "NVIDIA H100 80GB HBM3", "Tesla V100-SXM2-32GB", "AMD Instinct MI300X", "cpu:64")."""
    device = _match(name) if isinstance(name, str) and name.strip() else None
    if device is None:
        raise DaydreamError(f"unknown device {name!r}; known devices: {', '.join(names())} "
                            "(or cpu:N for an N-core CPU)")
    return device


def _as_props_list(props) -> list[dict]:
    if isinstance(props, str):
        try:
            props = ast.literal_eval(props.strip()) if props.strip() else []
        except (ValueError, SyntaxError) as exc:
            raise DaydreamError(f"deviceProperties is not a Python/JSON list of dicts: {exc}; "
                                "the trace metadata is damaged") from None
    if isinstance(props, dict):
        props = [props]
    if props is None:
        return []
    if not isinstance(props, (list, tuple)) or not all(isinstance(p, dict) for p in props):
        raise DaydreamError("deviceProperties must be a list of dicts (name, totalGlobalMem, "
                            "computeMajor, computeMinor, numSms)")
    return list(props)


def _count(value) -> int | None:
    """A positive integer field of deviceProperties, or None where it is missing or malformed."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        return None
    return value


def _by_capability(p: dict) -> Device | None:
    """Fallback for names the table does not know: vendor, then compute capability / CU count."""
    name = str(p.get("name", "")).lower()
    major, minor = _count(p.get("computeMajor")), p.get("computeMinor")
    sms, mem = _count(p.get("numSms")), _count(p.get("totalGlobalMem"))
    # HIP reports gfx9xx as computeMajor 9 too, so tell AMD apart first (wavefront size 64).
    if p.get("warpSize") == 64 or re.search(r"amd|radeon|gfx|instinct", name):
        amd = [d for d in _TABLE if d.vendor == "amd"]
        amd = [d for d in amd if d.compute_capability == (major, minor)] or amd
        return min(amd, key=lambda d: (abs(d.sm_count - (sms or d.sm_count)),
                                       abs(d.mem_bytes - (mem or d.mem_bytes))))
    if major is None:
        return None
    nvidia = [d for d in _TABLE if d.vendor == "nvidia"]
    same_major = [d for d in nvidia if d.compute_capability[0] == major]
    if not same_major:
        older = [d for d in nvidia if d.compute_capability[0] < major]
        if not older:
            return None
        newest = max(d.compute_capability[0] for d in older)
        same_major = [d for d in older if d.compute_capability[0] == newest]
    exact = [d for d in same_major if d.compute_capability == (major, minor)] or same_major
    return min(exact, key=lambda d: (abs(d.sm_count - (sms or d.sm_count)),
                                     abs(d.mem_bytes - (mem or d.mem_bytes))))


def from_device_properties(props, device_id: int | None = None) -> Device:
    """The Device a Kineto trace ran on, from its `deviceProperties` metadata (a list of dicts
    or the repr() of one). No GPUs listed means a CPU-only trace. A name the table does not know
    falls back on vendor, compute capability and SM/CU count; the result then carries the
    trace's own SM count and memory size and a name saying what it was modelled as."""
    entries = _as_props_list(props)
    if not entries:
        return _CPU
    chosen = entries[0]
    if device_id is not None:
        chosen = next((p for p in entries if p.get("id") == device_id), chosen)
    name = str(chosen.get("name") or "")
    mem = _count(chosen.get("totalGlobalMem"))
    device = _match(name, mem) if name else None
    if device is not None:
        return device
    base = _by_capability(chosen)
    if base is None:
        raise DaydreamError(f"cannot tell which device {name or 'the trace'} is (compute "
                            f"capability {chosen.get('computeMajor')}.{chosen.get('computeMinor')}"
                            f"); known devices: {', '.join(names())}")
    return dataclasses.replace(
        base, name=f"{name or 'unknown'} (modelled as {base.name})",
        sm_count=_count(chosen.get("numSms")) or base.sm_count,
        mem_bytes=mem or base.mem_bytes, aliases=())


# ---- traces that do not say which device they ran on ----------------------------------------
# Older Kineto, Chrome array-form and sampled traces carry no `deviceProperties`. Kernel names
# often still name the architecture they were compiled for: cuBLAS/cuDNN/CUTLASS kernels carry
# "sm80_", "sm90_", "cutlass_80_", "cutlass3x_sm90_" or the architecture's code name ("volta_"); rocBLAS/hipBLASLt's
# Tensile kernels ("Cijk_...") carry the ISA ("_ISA90a_", "_ISA942_"). A kernel built for an
# architecture runs on it or a newer one, so the newest architecture named is the inference.

# Compute capability named by an NVIDIA kernel -> the table entry modelled for it. 7.5 (Turing)
# is left out on purpose: a T4 and an RTX 2080 Ti differ 2-3x in peak and bandwidth.
_ARCH_DEVICE = {(7, 0): _V100_SXM2, (8, 0): _A100_80, (9, 0): _H100_SXM, (10, 0): _B200}
_ARCH_WORD = {"volta": (7, 0), "turing": (7, 5), "ampere": (8, 0), "hopper": (9, 0), "blackwell": (10, 0)}
_NV_ARCH = re.compile(r"(?<![a-z0-9])(?:(?:sm_?|cutlass_)(\d)(\d)a?|sm_?(1\d)(\d)a?|(volta|turing|ampere|hopper|blackwell))"
                      r"(?=_|[^a-z0-9]|$)")
_AMD_ISA = re.compile(r"_ISA(9\d[0-9a-f])(?=_|$)")


def infer_from_kernels(kernel_names) -> tuple[Device | None, str]:
    """(device, why) from the kernel names of a trace: the table entry for the newest
    architecture the names show, or (None, why not)."""
    nvidia, amd = set(), set()
    for name in kernel_names:
        text = str(name)
        for m in _NV_ARCH.finditer(text.lower()):
            if m.group(5):
                nvidia.add(_ARCH_WORD[m.group(5)])
            else:
                major, minor = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
                nvidia.add((int(major), int(minor)))
        amd.update(_AMD_ISA.findall(text))
    if amd:
        isa = max(amd)
        device = _match(f"gfx{isa}")
        if device is None:
            return None, f"its kernels are built for gfx{isa}, which the hardware table does not have"
        return device, f"kernel names built for gfx{isa}"
    if nvidia:
        cc = max(nvidia)
        device = _ARCH_DEVICE.get(cc)
        if device is None:
            return None, (f"its kernels are built for compute capability {cc[0]}.{cc[1]}, which names no "
                          "single device of the hardware table")
        return device, f"kernel names built for compute capability {cc[0]}.{cc[1]}"
    return None, "its kernel names do not name an architecture"


def trace_device(props, kernel_names, assumed: str | None = None) -> tuple[Device | None, str]:
    """The device a GPU trace ran on, and a note saying how it was found ('' when the trace says).

    In order: the trace's `deviceProperties` (see from_device_properties); `assumed` (--device)
    where the trace does not say; the architecture its kernel names show; else (None, the one
    line telling the user to pass --device)."""
    entries = _as_props_list(props)
    said = [p for p in entries if p.get("name") or _count(p.get("computeMajor")) is not None]
    if said:
        device = from_device_properties(said)
        if assumed and lookup(assumed) != device:
            return device, f"--device {assumed} ignored: the trace says it ran on {device.name}"
        return device, ""
    if assumed:
        device = lookup(assumed)
        return device, f"device: the trace does not say which GPU it ran on; --device {device.name} taken"
    device, why = infer_from_kernels(kernel_names)
    if device is not None:
        return (dataclasses.replace(device, name=f"{device.name} (inferred)", aliases=()),
                f"device: the trace does not say which GPU it ran on; {why}: modelled as {device.name} "
                "(pass --device NAME to choose)")
    return None, (f"the trace does not say which GPU it ran on (no deviceProperties) and {why}; "
                  f"pass --device NAME (e.g. {', '.join(dict.fromkeys(d.family for d in _TABLE if d.vendor != 'cpu'))})")


_ASSUMED_DEVICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("assumed_device", default=None)


def assumed_device() -> str | None:
    """The device name given with --device for traces that do not say (None: not given)."""
    return _ASSUMED_DEVICE.get()


def assume_device(name: str | None) -> None:
    """Take `name` as the device of traces that do not say (the CLI's --device); None: forget it.
    An unknown name is refused at once."""
    if name is not None:
        lookup(name)
    _ASSUMED_DEVICE.set(name)
