"""The generation engine: transformers' `generate` over a preallocated KV cache.

One job per module, read in this order:
    config.py         GenerationConfig: transformers' options and the engine's own
    processors.py     logits processors, in transformers' order
    steps.py          the eager prefill and decode steps and the decode state
    search.py         greedy / sampling and beam search over the cache
    static.py         the static decode step: captured once as a CUDA graph, replayed
    greedy_graph.py   greedy search with the token choice inside the captured step
    kernel_choice.py  torch's kernels or the fused Triton layer, measured where it runs
    output.py         what return_dict_in_generate=True returns (transformers' output classes)
    api.py            the public `generate`: transformers' argument handling
    streamer.py       transformers' streamer interface and a text streamer

The engine reads a model's weights through `biogpt.model.fast` (the faster kernels) and never
changes the model; it never imports modeling.py (the model's `generate` method imports it).
"""

from __future__ import annotations

from .api import generate
from .config import GenerationConfig
from .output import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from .processors import LogitsProcessor, build_processors
from .static import StaticDecoder
from .steps import DecodeState, decode_step, prefill
from .streamer import Streamer, TextStreamer

__all__ = [
    "DecodeState",
    "GenerateBeamDecoderOnlyOutput",
    "GenerateDecoderOnlyOutput",
    "GenerationConfig",
    "LogitsProcessor",
    "StaticDecoder",
    "Streamer",
    "TextStreamer",
    "build_processors",
    "decode_step",
    "generate",
    "prefill",
]
