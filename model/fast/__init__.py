"""Inference fast paths beside the reference model: each reads the model's weights (or builds
its own copy) and never changes the model; the model never imports this package.

    cpu.py            oneDNN float32 projections, one-query half-precision attention, and
                      ATen's single-row matrix-vector kernels (scoped to a decode step)
    network.py        FastNetwork: the decoder built from a model's weights with those kernels
                      and, where a step is kernel-bound, fused q/k/v
    quantize.py       quantize_int8: an int8 copy of a model for CPU inference
    cpu_kernels.py    the int8 products' C kernel (VNNI), built on first use
    fused.py          the fused Triton decode layer and step (GPU; interpreter in the tests)
    triton_common.py  what the Triton kernels share (interpreter, dependent launches)
    triton_linear.py  the one-row linear kernel
    triton_step.py    the step's prologue, one-query attention and greedy-pick kernels
    tuning.py         launch configurations: rule, autotuner, per-machine cache

Each is proven equal to the reference by tests (tests/model/test_fast.py and others).
"""
