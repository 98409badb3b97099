"""The model methods transformers' `PreTrainedModel` offers besides loading and saving.

Mixed into every model class through checkpoint.PretrainedMixin, so modeling.py stays the
network: embeddings access and resizing (the "add tokens, then fine-tune" recipe),
`num_parameters`, activation (gradient) checkpointing, `generation_config`, `can_generate`.
Each follows transformers 5's behaviour and names, so code written for its BioGPT runs unchanged;
tests/model/test_hf_methods.py compares them with transformers on the same weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from .config import BioGptConfig
from .errors import InvalidOptionError

# the default of transformers' activation_checkpointing_enable (torch's recommended mode)
_CHECKPOINT = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)


class ModelMethodsMixin:
    """transformers' PreTrainedModel methods over modeling.py's modules (`embed_tokens` in the
    body, `output_projection` as the causal LM's head)."""

    config: BioGptConfig
    config_class = BioGptConfig
    base_model_prefix = "biogpt"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # What BioGptModel.forward recomputes a layer with when checkpointing: a staticmethod here so
    # the class default is a plain function; activation_checkpointing_enable sets the instance's.
    _gradient_checkpointing_func: Callable[..., Any] = staticmethod(_CHECKPOINT)

    # transformers' PreTrainedModel class attributes, read by code that handles any transformers
    # model: accelerate's device_map (`_no_split_modules`), the attention selection
    # (`_supports_*`), loaders and savers (the `_keys_*` and fp32 sets). Only eager and SDPA
    # attention exist here, so flash and flex are False.
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    # The lists are empty sets, the form transformers gives them on a built model (its post_init
    # turns the class's None into set()), which is where code reads them.
    _no_split_modules: frozenset[str] = frozenset({"BioGptDecoderLayer"})
    _skip_keys_device_placement: frozenset[str] = frozenset()
    _keep_in_fp32_modules: frozenset[str] = frozenset()
    _keep_in_fp32_modules_strict: frozenset[str] = frozenset()
    _keys_to_ignore_on_load_missing: frozenset[str] = frozenset()
    _keys_to_ignore_on_load_unexpected: frozenset[str] = frozenset()
    _keys_to_ignore_on_save: frozenset[str] = frozenset()
    # None, unlike transformers' causal LM: a tied head is listed once in our state_dict (see
    # state_dict below), so no state-dict key of it exists for code to untie or skip.
    _tied_weights_keys: dict[str, str] | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def _from_config(
        cls, config: BioGptConfig, *, dtype: Any = None, torch_dtype: Any = None, attn_implementation: str | None = None
    ) -> Any:
        """transformers' way to build a randomly initialised model from a config (AutoModel's
        from_config calls it): `attn_implementation` is recorded on the config, and the model is
        built in `dtype` (default: the config's, else torch's default), which the config records."""
        if attn_implementation is not None:
            _check_attn_implementation(attn_implementation)
            config._attn_implementation = attn_implementation
        dtype = dtype if dtype is not None else torch_dtype if torch_dtype is not None else config.dtype
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype.removeprefix("torch."))
        config.dtype = dtype
        if dtype is None:
            return cls(config)  # type: ignore[call-arg]
        # built directly in the dtype (no float32 copy first), as transformers does
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return cls(config)  # type: ignore[call-arg]
        finally:
            torch.set_default_dtype(previous)

    # ----------------------------------------------------------------- end of construction
    def _finish_construction(self, *, init: bool) -> None:
        """The last step of every constructor in modeling.py: initialise the weights (`init`), or
        leave them to the caller (from_pretrained's loader fills them) and only tie the head;
        then mark every module initialised, so that post_init leaves them alone, and honour a
        config saved with `gradient_checkpointing: true` (transformers 4 wrote it) as
        transformers does."""
        if init:
            self.init_weights()  # type: ignore[attr-defined]
        else:
            self.tie_weights()
        for module in self.modules():  # type: ignore[attr-defined]
            module._is_hf_initialized = True  # transformers' flag name, which its code reads too
        self._backward_compatibility_gradient_checkpointing()

    def post_init(self) -> None:
        """transformers' post_init, which a subclass calls at the end of its __init__ after adding
        modules (a new head): initialise the modules not initialised yet (only those added since
        construction or loading; a resize marks what it adds), tie the head, apply a config's
        `gradient_checkpointing`. Calling it again changes nothing."""
        for module in self.modules():  # type: ignore[attr-defined]
            if not getattr(module, "_is_hf_initialized", False):
                self._init_weights(module)  # type: ignore[attr-defined]
                module._is_hf_initialized = True
        self.tie_weights()
        self._backward_compatibility_gradient_checkpointing()

    def _backward_compatibility_gradient_checkpointing(self) -> None:
        if self.supports_gradient_checkpointing and getattr(self.config, "gradient_checkpointing", False):
            self.activation_checkpointing_enable()
            del self.config.gradient_checkpointing  # consumed: not written back to config.json

    # ----------------------------------------------------------------- attention implementation
    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """Whether `set_attn_implementation` may switch attention after building: always, since
        every attention layer reads `config._attn_implementation` on each call."""
        return True

    @classmethod
    def _can_set_experts_implementation(cls) -> bool:
        """transformers' switch for mixture-of-experts layers; BioGPT has none."""
        return False

    def set_attn_implementation(self, attn_implementation: str | dict[str, str]) -> None:
        """Switch attention between "eager" (written out; gives `output_attentions` weights) and
        "sdpa" (torch's scaled_dot_product_attention) on a built model, as transformers does.
        A dict (transformers' per-sub-config form) uses its "" entry; a text model has no other.
        Anything else raises ValueError, as in transformers."""
        if isinstance(attn_implementation, dict):
            attn_implementation = attn_implementation.get("", self.config._attn_implementation)
        _check_attn_implementation(attn_implementation)
        self.config._attn_implementation = attn_implementation
        for module in self.modules():  # type: ignore[attr-defined]
            config = getattr(module, "config", None)
            if isinstance(config, BioGptConfig) and config is not self.config:
                config._attn_implementation = attn_implementation  # a module holding its own copy

    @property
    def loss_type(self) -> str | None:
        """transformers' name of the loss this class computes, from the class name as transformers
        derives it. Its Trainer reads it: for "ForCausalLM" it counts the target tokens of a
        batch (num_items_in_batch) without the first position, which the shifted loss never
        predicts."""
        for name in ("ForCausalLM", "ForSequenceClassification", "ForTokenClassification"):
            if type(self).__name__.endswith(name):
                return name
        return None

    @property
    def tp_plan(self) -> dict[str, str]:
        """transformers' tensor-parallel plan; BioGPT has none there either."""
        return dict(self.config.base_model_tp_plan or {})

    # ----------------------------------------------------------------- embeddings
    @property
    def base_model(self) -> nn.Module:
        """The body (BioGptModel): `self.biogpt` for a head model, the model itself otherwise."""
        body = getattr(self, self.base_model_prefix, None)
        return body if isinstance(body, nn.Module) else self  # type: ignore[return-value]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embed_tokens  # type: ignore[return-value]

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.base_model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module | None:
        """The LM head (tied to the input embeddings by default); None for models without one."""
        return getattr(self, "output_projection", None)

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        if self.get_output_embeddings() is None:
            raise AttributeError(f"{type(self).__name__} has no output embeddings (only BioGptForCausalLM has an LM head)")
        self.output_projection = new_embeddings

    def tie_weights(self) -> None:
        """Heads tied to the input embeddings share their Parameter (the causal LM overrides this)."""

    # ----------------------------------------------------------------- tied head in state dicts
    def _tied_head_key(self, prefix: str) -> tuple[str, str] | None:
        """(head key, embedding key) under `prefix` while the LM head shares the embedding's
        Parameter, else None."""
        head = getattr(self, "output_projection", None)
        body = self.base_model
        if head is None or body is self or head.weight is not getattr(body.get_input_embeddings(), "weight", None):  # type: ignore[operator]
            return None
        return f"{prefix}output_projection.weight", f"{prefix}{self.base_model_prefix}.embed_tokens.weight"

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """nn.Module's, with a tied LM head listed once (under the embedding's name), as
        save_pretrained writes it. Why: transformers' Trainer saves a model that is not its own
        PreTrainedModel with safetensors.torch.save_file(model.state_dict()), which refuses two
        names for one tensor (Trainer.save_model and every checkpoint would fail).
        `_load_from_state_dict` accepts both forms, so load_state_dict(strict=True) still works."""
        state = super().state_dict(*args, **kwargs)  # type: ignore[misc]
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        keys = self._tied_head_key(prefix)
        if keys is not None:
            state.pop(keys[0], None)
        return state

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # a state dict without the tied head's own entry (ours, save_pretrained's): the head is
        # the embedding; fill it in so strict loading does not call it missing
        keys = self._tied_head_key(prefix)
        if keys is not None and keys[0] not in state_dict and keys[1] in state_dict:
            state_dict[keys[0]] = state_dict[keys[1]]
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[misc]

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
        """transformers' GenerationMixin hook: the forward keywords of one generation step. Our
        generate does not call it; peft's PeftModelForCausalLM reads it when it wraps a model
        (and wraps it), so it must exist."""
        return {"input_ids": input_ids, **{k: v for k, v in kwargs.items() if v is not None}}

    def resize_token_embeddings(
        self,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> nn.Embedding:
        """transformers' resize: rows kept from the start, new rows at the end, drawn from a normal
        distribution with the old rows' mean and (1e-9 times their) covariance (`mean_resizing`,
        which keeps the next-token distribution almost unchanged), else like a fresh embedding.
        The embedding module stays the same object (its weight Parameter too, so a tied LM head
        follows); an untied head is resized the same way. config.vocab_size follows.

        The random draws are transformers' own, in its order, so under the same seed the new
        rows equal transformers' bit for bit."""
        embeddings = self._resize_embedding(self.get_input_embeddings(), new_num_tokens, pad_to_multiple_of, mean_resizing)
        if new_num_tokens is None and pad_to_multiple_of is None:
            return embeddings
        size = embeddings.weight.shape[0]
        head = self.get_output_embeddings()
        if head is not None:
            new_head = self._resize_lm_head(head, size, mean_resizing)  # type: ignore[arg-type]
            new_head.requires_grad_(head.weight.requires_grad)
            if new_head is not head:
                self.set_output_embeddings(new_head)
        self.config.vocab_size = size
        self.vocab_size = size  # transformers records it on the model too
        self.tie_weights()
        return embeddings

    def _resize_embedding(
        self, old: nn.Embedding, new_num_tokens: int | None, pad_to_multiple_of: int | None, mean_resizing: bool
    ) -> nn.Embedding:
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                # transformers' wording (code matches on it), then ours
                raise InvalidOptionError(
                    f"Asking to pad the embedding matrix to a multiple of `{pad_to_multiple_of}`, which is not and integer. "
                    f"Please make sure to pass an integer (pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r})"
                )
            if new_num_tokens is None:
                new_num_tokens = old.weight.shape[0]
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        if new_num_tokens is None:
            return old
        if new_num_tokens < 1:
            raise InvalidOptionError(f"new_num_tokens must be at least 1, got {new_num_tokens}")
        old_num, dim = old.weight.shape
        if new_num_tokens == old_num:
            old.num_embeddings = new_num_tokens
            return old
        # Built as transformers builds it (its constructor draws its own init first), so the
        # random stream and therefore the added rows are the same as transformers' under a seed.
        new = nn.Embedding(new_num_tokens, dim, device=old.weight.device, dtype=old.weight.dtype)
        if new_num_tokens > old_num:
            if mean_resizing:
                _init_added_rows_with_mean(old.weight, new.weight, old_num, new_num_tokens - old_num)
            else:
                self._init_weights(new)  # type: ignore[attr-defined]
        n = min(old_num, new_num_tokens)
        with torch.no_grad():
            new.weight[:n] = old.weight[:n]
        # The same Parameter object keeps its place (and its ties, and an optimizer's reference);
        # only its data and the module's size change, as in transformers.
        old.weight.data = new.weight.data
        old.num_embeddings = new_num_tokens
        if old.padding_idx is not None and old.padding_idx > new_num_tokens - 1:
            old.padding_idx = None
        return old

    def _resize_lm_head(self, old: nn.Linear, new_num_tokens: int, mean_resizing: bool) -> nn.Linear:
        old_num, dim = old.weight.shape
        if old_num == new_num_tokens:  # tied: the embedding's resize already resized this weight
            old.out_features = new_num_tokens
            return old
        new = nn.Linear(dim, new_num_tokens, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
        if new_num_tokens > old_num:
            if mean_resizing:
                added = new_num_tokens - old_num
                _init_added_rows_with_mean(old.weight, new.weight, old_num, added)
                if old.bias is not None:
                    mean = torch.mean(old.bias.data, dim=0, dtype=torch.float32)
                    std = torch.std(old.bias.data, dim=0).to(torch.float32)
                    new.bias.data[-added:].normal_(mean=mean, std=1e-9 * std)  # type: ignore[union-attr]
            else:
                self._init_weights(new)  # type: ignore[attr-defined]
        n = min(old_num, new_num_tokens)
        with torch.no_grad():
            new.weight[:n] = old.weight[:n]
            if old.bias is not None:
                new.bias[:n] = old.bias[:n]  # type: ignore[index]
        new._is_hf_initialized = True  # its rows are the old head's and the added ones: post_init keeps them
        return new

    # ----------------------------------------------------------------- counting
    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters counted once each (a tied head is the embedding); `exclude_embeddings`
        leaves out every nn.Embedding's weight (tokens and positions), as transformers does."""
        skip = (
            {f"{name}.weight" for name, module in self.named_modules() if isinstance(module, nn.Embedding)}  # type: ignore[attr-defined]
            if exclude_embeddings
            else set()
        )
        return sum(
            p.numel()
            for name, p in self.named_parameters()  # type: ignore[attr-defined]
            if name not in skip and (p.requires_grad or not only_trainable)
        )

    # ----------------------------------------------------------------- activation checkpointing
    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict[str, Any] | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Recompute each decoder layer's activations in backward (memory for compute).
        activation_checkpointing_kwargs go to torch.utils.checkpoint.checkpoint (default
        use_reentrant=False, as transformers); offload keeps the saved inputs in pinned host memory."""
        if every_n_layers != 1:
            # every layer or none: BioGptModel.forward decides per model, not per layer
            raise InvalidOptionError(f"every_n_layers={every_n_layers}: biogpt-cli checkpoints every layer (1) or none")
        kwargs = {"use_reentrant": False} if activation_checkpointing_kwargs is None else dict(activation_checkpointing_kwargs)
        fn: Callable[..., Any] = functools.partial(torch.utils.checkpoint.checkpoint, **kwargs)
        if offload:
            inner = fn

            def fn(function: Callable[..., Any], *args: Any, **kw: Any) -> Any:
                with torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
                    return inner(function, *args, **kw)

        self._set_checkpointing(True, fn)

    def activation_checkpointing_disable(self) -> None:
        self._set_checkpointing(False, _CHECKPOINT)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """transformers' older name of activation_checkpointing_enable (kept there until v6)."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.activation_checkpointing_disable()

    @property
    def is_activation_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())  # type: ignore[attr-defined]

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.is_activation_checkpointing

    def _set_checkpointing(self, enable: bool, fn: Callable[..., Any]) -> None:
        for module in self.modules():  # type: ignore[attr-defined]
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enable
                module._gradient_checkpointing_func = fn

    def enable_input_require_grads(self) -> None:
        """The input embeddings' output requires grad, so checkpointed layers get gradients when
        the embeddings are frozen (peft's LoRA with checkpointing), as transformers does."""
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self._require_grads_hook = self.get_input_embeddings().register_forward_hook(hook)

    def disable_input_require_grads(self) -> None:
        handle = getattr(self, "_require_grads_hook", None)
        if handle is not None:
            handle.remove()
            del self._require_grads_hook

    # ----------------------------------------------------------------- generation
    @classmethod
    def can_generate(cls) -> bool:
        """True for a class with `generate` (the causal LM only), as transformers answers."""
        return callable(getattr(cls, "generate", None))

    @property
    def generation_config(self) -> Any:
        """The model's generation defaults: generation_config.json when loaded from a folder that
        has one, else its config's special tokens; None for a model that cannot generate."""
        if "_generation_config" not in self.__dict__:
            from .generation.config import GenerationConfig

            self.__dict__["_generation_config"] = (
                GenerationConfig.from_model_config(self.config) if self.can_generate() else None
            )
        return self.__dict__["_generation_config"]

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.__dict__["_generation_config"] = value


ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


def _check_attn_implementation(name: str) -> None:
    if name not in ATTN_IMPLEMENTATIONS:
        # transformers' message, so code matching on it keeps working
        raise ValueError(
            f'Specified `attn_implementation="{name}"` is not supported. The only possible arguments are '
            '`attn_implementation="eager"` and `attn_implementation="sdpa"` (biogpt-cli implements no other).'
        )


def _init_added_rows_with_mean(old: torch.Tensor, new: torch.Tensor, old_num: int, added: int) -> None:
    """transformers' `_init_added_embeddings_weights_with_mean`: sample from N(mean, 1e-9 * cov)
    of the old rows (float32), or the mean itself where that covariance is not positive definite."""
    weight = old.data.to(torch.float32)
    mean = weight.mean(dim=0)
    centered = weight - mean
    covariance = centered.T @ centered / old_num
    epsilon = 1e-9
    if torch.distributions.constraints.positive_definite.check(epsilon * covariance).all():
        distribution = torch.distributions.multivariate_normal.MultivariateNormal(mean, covariance_matrix=epsilon * covariance)
        new.data[-added:, :] = distribution.sample(sample_shape=(added,)).to(old.dtype)
    else:
        new.data[-added:, :] = mean[None, :].repeat(added, 1).to(old.dtype)
