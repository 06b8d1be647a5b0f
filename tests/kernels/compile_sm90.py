"""Compile every Triton kernel for sm_90 (H100/H200) with Triton's bundled toolchain, without a GPU.

Run by test_compile_sm90.py in a subprocess *without* TRITON_INTERPRET (under the interpreter the
kernels are plain Python and cannot be compiled). Goes through every stage Triton has for CUDA
(TTIR, TTGIR, LLVM IR, PTX and, with the bundled ptxas, a cubin), so a kernel that would fail to
build on the GPU machine fails here. Prints one line per compiled variant.
"""

from __future__ import annotations

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from eqr.kernels import triton_ops

TARGET = GPUTarget("cuda", 90, 32)
ACT = "act"  # stands for the activation dtype of the variant
POINTERS = {
    **dict.fromkeys(["x_ptr", "r_ptr", "y_ptr", "g_ptr", "o_ptr", "z_ptr", "f_ptr", "base_ptr", "out_ptr"], ACT),
    **dict.fromkeys(["l_ptr", "p_ptr"], ACT),
    **dict.fromkeys(["seed_ptr", "step_ptr", "pp_ptr", "pred_ptr", "change_ptr"], "i64"),
    **dict.fromkeys(["part_ptr", "scale_ptr", "delta_ptr"], "fp32"),
}
FLOATS = {"eps", "lam", "one_minus_lam"}
# block sizes the launch wrappers pick for the paper's Sudoku model (S=97, D=512, 81 cells, 11 tokens)
VARIANTS = [
    (triton_ops._add_rms_norm_channels_kernel, {"BLOCK_M": 8, "BLOCK_D": 512}),
    (triton_ops._add_rms_norm_positions_kernel, {"BLOCK_S": 128, "BLOCK_D": 32}),
    (triton_ops._swiglu_kernel, {"BLOCK": 1024}),
    (triton_ops._damped_update_kernel, {"HAS_NOISE": True, "HAS_BASE": True, "BLOCK": 1024}),
    (triton_ops._damped_update_kernel, {"HAS_NOISE": False, "HAS_BASE": False, "BLOCK": 1024}),
    (triton_ops._step_deltas_kernel, {"BLOCK_S": 128, "BLOCK_V": 16}),
]


def signature(kernel: triton.JITFunction, constexprs: dict[str, object], act: str) -> dict[str, str]:
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in POINTERS:
            sig[name] = "*" + (act if POINTERS[name] == ACT else POINTERS[name])
        else:
            sig[name] = "fp32" if name in FLOATS else "i32"
    return sig


def main() -> None:
    for kernel, constexprs in VARIANTS:
        for act in ("bf16", "fp32"):
            src = ASTSource(kernel, signature(kernel, constexprs, act), constexprs=constexprs)
            compiled = triton.compile(src, target=TARGET, options={"enable_fp_fusion": True})
            stages = [k for k in ("ttir", "ttgir", "llir", "ptx", "cubin") if compiled.asm.get(k)]
            print(f"{kernel.__name__} {act} {constexprs}: {' '.join(stages)}")


if __name__ == "__main__":
    main()
