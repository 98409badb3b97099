"""Generation options: transformers' `GenerationConfig` names and defaults, plus the engine's own."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidOptionError

DECODE_KERNELS = ("auto", "torch", "triton")
EOS_CHECK_EVERY = 8  # greedy/sampling: the host's "all finished?" check period, in steps (a sync on a GPU)


@dataclass
class GenerationConfig:
    """transformers' generation options, names and defaults."""

    max_new_tokens: int | None = None
    max_length: int | None = None  # prompt + new tokens; 20 when neither is given (as transformers)
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    bad_words_ids: list[list[int]] | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # biogpt-cli's own: decode steps as one captured CUDA graph over a static cache. None = on
    # for CUDA inputs in eval mode; True on a CPU runs the same static-shape step eagerly (tests).
    cuda_graph: bool | None = None
    # biogpt-cli's own: run the captured step through torch.compile (True: the whole step,
    # "layers": the decoder layer, compiled once for all layers; see static.StaticDecoder).
    # Opt-in: the first call of each (rows, length) bucket compiles for tens of seconds, so it
    # pays for long runs, not for a one-off prompt.
    compile_step: bool | str = False
    # biogpt-cli's own: the kernels of a captured step of at most kernel_choice.AUTO_MAX_ROWS
    # rows. "auto": measure the fused Triton layer (biogpt.model.fast.fused) against torch's
    # kernels at the first call of a bucket and keep the fastest that agrees; "torch" /
    # "triton": that one.
    decode_kernels: str = "auto"

    def validate(self) -> None:
        if self.compile_step not in (True, False, "layers"):
            raise InvalidOptionError(f"compile_step must be True, False or 'layers', got {self.compile_step!r}")
        if self.decode_kernels not in DECODE_KERNELS:
            raise InvalidOptionError(f"decode_kernels must be one of {', '.join(DECODE_KERNELS)}, got {self.decode_kernels!r}")
        if self.decode_kernels == "triton" and self.compile_step:
            raise InvalidOptionError("decode_kernels='triton' and compile_step exclude each other (torch.compile fuses the step itself)")
        if self.num_beams < 1:
            raise InvalidOptionError(f"num_beams must be at least 1, got {self.num_beams}")
        if self.num_return_sequences < 1:
            raise InvalidOptionError(f"num_return_sequences must be at least 1, got {self.num_return_sequences}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise InvalidOptionError(
                f"num_return_sequences ({self.num_return_sequences}) must be at most num_beams ({self.num_beams})"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise InvalidOptionError("greedy decoding returns one sequence; use do_sample=True or num_beams>1 for several")
        if self.do_sample and not self.temperature > 0:
            raise InvalidOptionError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InvalidOptionError(f"top_p must be within [0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise InvalidOptionError(f"top_k must be >= 0, got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise InvalidOptionError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.early_stopping not in (True, False, "never"):
            raise InvalidOptionError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        for name in ("max_new_tokens", "min_new_tokens", "no_repeat_ngram_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidOptionError(f"{name} must be >= 0, got {value}")
