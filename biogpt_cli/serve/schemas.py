"""The request bodies the server accepts, as pydantic (v2) models.

Every body forbids unknown fields: a misspelt option (`max_token`) is a 400 naming it, never a
silent default. Field defaults are OpenAI's (Completions API: `max_tokens` 16, `temperature` 1,
`top_p` 1, `n` 1); the extra fields are the options BioGPT's `generate` has and OpenAI lacks.
Checks that need the model (prompt length, token ids in the vocabulary) are in the endpoints.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ..documents import PASSAGE_TYPES, SECTION_TYPES
from ..longdocs import MODES

# a prompt / an embeddings input: a string, strings, token ids, or lists of token ids
TextOrTokens = Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(Body):
    include_usage: bool = False


class CompletionRequest(Body):
    """POST /v1/completions (OpenAI's legacy Completions API)."""

    model: str | None = None  # None: the default (first) model
    prompt: TextOrTokens
    max_tokens: int | None = Field(16, ge=0)  # None: 16, as OpenAI
    temperature: float | None = Field(1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=128)
    stop: StrictStr | list[StrictStr] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1 - 128)  # choice i samples with seed + i (n ≤ 128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    frequency_penalty: float | None = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    suffix: str | None = None  # refused unless empty: BioGPT has no insertion mode
    best_of: int | None = Field(None, ge=1)  # accepted when 1 or n: we return every candidate
    # BioGPT's own options (transformers' generate names), as extra fields
    num_beams: int = Field(1, ge=1, le=16)
    top_k: int = Field(0, ge=-1)  # 0 or -1 (vLLM's "off"): no top-k
    repetition_penalty: float = Field(1.0, gt=0.0)
    no_repeat_ngram_size: int = Field(0, ge=0)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False


class EmbeddingRequest(Body):
    """POST /v1/embeddings."""

    model: str | None = None
    input: TextOrTokens
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)  # accepted only as the model's hidden size
    user: str | None = None


# how a document longer than the model's positions is read (the CLI's --long-documents)
LongDocuments = Literal[MODES]  # type: ignore[valid-type]


class Passage(Body):
    """A passage of a document (biogpt_cli.documents' shape): its text is the document text at
    `offset` (Unicode code points); the endpoints check that and name the passage when not."""

    type: Literal[PASSAGE_TYPES] = "text"  # type: ignore[valid-type]
    section: str = ""
    section_type: Literal[SECTION_TYPES] = "other"  # type: ignore[valid-type]
    offset: StrictInt = Field(ge=0)
    text: StrictStr


class Document(Body):
    """A document of the task endpoints, as the CLI reads a JSONL record (text, or title +
    abstract joined with one space so character offsets hold), optionally with its passages
    (as `biogpt data passages` writes them), which long documents are read by."""

    id: str | None = None
    text: str | None = None
    title: str | None = None
    abstract: str | None = None
    passages: list[Passage] | None = None


class Question(Body):
    """A PubMedQA-style question (the CLI's `biogpt qa` record)."""

    id: str | None = None
    question: str
    context: str | list[str]
    long_answer: str = ""


class RelationsRequest(Body):
    """POST /v1/extract-relations: one document or a list."""

    model: str | None = None
    task: str | None = None  # default: the task recorded with the model
    input: StrictStr | Document | list[Union[StrictStr, Document]]
    entities: dict[str, dict[str, str]] | None = None  # BC5CDR: {"chemical2id": ..., "disease2id": ...}
    constrained: bool = False
    num_beams: int | None = Field(None, ge=1, le=16)
    max_new_tokens: int | None = Field(None, ge=1)
    long_documents: LongDocuments = "auto"


class QaRequest(Body):
    """POST /v1/qa: one question or a list."""

    model: str | None = None
    task: str | None = None  # pubmedqa (the only QA task)
    input: Question | list[Question]
    setting: Literal["reasoning-required", "reasoning-free"] | None = None
    generate: bool = False
    long_documents: LongDocuments = "auto"


class TagRequest(Body):
    """POST /v1/tag: one document or a list."""

    model: str | None = None
    input: StrictStr | Document | list[Union[StrictStr, Document]]
    long_documents: LongDocuments = "auto"


class ClassifyRequest(Body):
    """POST /v1/classify: one document or a list."""

    model: str | None = None
    task: str | None = None  # a causal LM fine-tuned for a generative task (hoc)
    input: StrictStr | Document | list[Union[StrictStr, Document]]
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    num_beams: int | None = Field(None, ge=1, le=16)
    max_new_tokens: int | None = Field(None, ge=1)
    long_documents: LongDocuments = "auto"


def error_body(message: str, *, type: str, param: str | None = None, code: str | int | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
