"""Request and response Structs of the inference endpoints, and the catalog's shapes.

Requests are decoded twice from the same bytes, both with msgspec and both cheap: once into a typed
Struct that validates the fields the gateway interprets (OpenAI's schema for them), and once into a
``dict[str, msgspec.Raw]`` that keeps every field as the client's own bytes. The upstream body is the
raw dict with ``model`` (and for streams ``stream_options``) replaced, so fields the gateway does not
interpret (tools, response_format, logprobs, seed, n, ...) reach the upstream byte for byte.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import urllib.parse
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

Capability = Literal["chat", "completions", "embeddings"]
Provider = Literal["openai", "local"]
# Client wire formats a deployment also speaks itself, so requests in them are passed through untranslated:
# OpenAI's Responses API (``{base_url}/responses``) and Anthropic's Messages API (``{base_url}/messages``).
NativeApi = Literal["responses", "messages"]

_NonNeg = Annotated[int, msgspec.Meta(ge=0)]
_Pos = Annotated[int, msgspec.Meta(ge=1)]
# A context window in tokens (a 32-bit column): far beyond any model's.
_ContextLength = Annotated[int, msgspec.Meta(ge=1, le=16_777_216)]

# Above any model's context window: a larger cap is a mistake or an attack on the limiter's arithmetic.
MAX_TOKENS_LIMIT = 1_048_576
_MaxTokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_LIMIT)]
# A public model name as the catalog allows it (and nothing a log, a label or a database would choke on).
MODEL_NAME_PATTERN = r"^[A-Za-z0-9._:/-]+(?![\s\S])"
_RequestModel = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=MODEL_NAME_PATTERN)]
_Choices = Annotated[int, msgspec.Meta(ge=1, le=128)]


# --- requests (only the fields the gateway reads or validates; everything else passes through) ---


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None


ChatRole = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(msgspec.Struct, kw_only=True):
    """One message; content may be text, a list of parts, or null (only an assistant's tool calls)."""

    role: ChatRole
    content: str | list[Any] | None = None


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/chat/completions``: the validated part of the body."""

    model: _RequestModel
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: _MaxTokens | None = None
    max_completion_tokens: _MaxTokens | None = None
    n: _Choices | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    user: str | None = None


class CompletionRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/completions`` (legacy): the validated part of the body."""

    model: _RequestModel
    prompt: str | list[str | int | list[int]]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: _MaxTokens | None = None
    n: _Choices | None = None
    best_of: Annotated[int, msgspec.Meta(ge=1, le=20)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    echo: bool | None = None


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/embeddings``: the validated part of the body."""

    model: _RequestModel
    input: str | list[str | int | list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: _Pos | None = None


# --- what the gateway peeks at in upstream responses (unknown fields are skipped while decoding) ---


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int = 0


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # Some upstreams send ``null`` for these; either way only the counts inside matter.
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens the upstream served from its prompt cache (part of ``prompt_tokens``)."""
        d = self.prompt_tokens_details
        return d.cached_tokens if d is not None else 0

    @property
    def reasoning_tokens(self) -> int:
        """Completion tokens spent on reasoning (part of ``completion_tokens``)."""
        d = self.completion_tokens_details
        return d.reasoning_tokens if d is not None else 0


class ContentPeek(msgspec.Struct, kw_only=True):
    content: Any = None


class ChoicePeek(msgspec.Struct, kw_only=True):
    finish_reason: str | None = None
    text: str | None = None
    message: ContentPeek | None = None
    delta: ContentPeek | None = None

    @property
    def delta_has_content(self) -> bool:
        """Whether this stream chunk carries generated text (or tool-call text)."""
        return self.delta is not None and bool(self.delta.content)


class ResponsePeek(msgspec.Struct, kw_only=True):
    """The parts of a completion, chunk or embeddings response the gateway accounts from."""

    choices: list[ChoicePeek] | None = None
    usage: Usage | None = None
    # Raw, unparsed: only whether there is one matters. (``Raw | None`` would refuse any object: msgspec takes
    # no union with Raw, and every chunk carrying an error then failed to decode and went unnoticed.)
    error: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))


class ErrorPeek(msgspec.Struct, kw_only=True):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class ErrorBodyPeek(msgspec.Struct, kw_only=True):
    error: ErrorPeek | str | None = None
    message: str | None = None
    detail: Any = None


# --- models list (OpenAI shape) ---


class ModelObject(msgspec.Struct, kw_only=True):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(msgspec.Struct, kw_only=True):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


# --- the catalog (admin API, YAML file, and the Redis cache all use these) ---


# A credential reference: resolved by ``providers.credentials`` in a namespace of its own.
CREDENTIAL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(?![\s\S])"
# What API keys look like (OpenAI's, Anthropic's and most OpenAI-compatible servers'): a reference that
# does is a key pasted in the wrong place, and would be stored and shown in the catalog.
_LOOKS_LIKE_A_KEY = re.compile(r"^(sk|pk|rk|key)[-_]", re.IGNORECASE)
# An absolute path, without NUL or any other control character.
CA_BUNDLE_PATTERN = r"^/[^\x00-\x1f\x7f]*(?![\s\S])"
_URL_CHARS = re.compile(r"^[!-~]+\Z")  # printable ASCII: no space, no CR/LF, no control character
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}\.?\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")


def check_base_url(url: str) -> str:
    """``url`` if it is a plain ``http(s)://host[:port][/path]`` URL; ``ValueError`` saying what is wrong.

    Strict on purpose: the URL goes into a request line and a ``Host`` header, so anything a parser could
    read two ways (whitespace, CR/LF, userinfo, a query or fragment, an empty or odd host) is refused.
    """
    if len(url) > 2048 or not _URL_CHARS.match(url):
        raise ValueError("base_url must be at most 2048 printable ASCII characters, without spaces")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("base_url must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError("base_url must not carry credentials; use credential_ref")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("base_url must not have a query or a fragment")
    host = parts.hostname or ""
    if not host:
        raise ValueError("base_url must name a host")
    if not _HOSTNAME.match(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("base_url's host is not a valid name or IP address") from None
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("base_url has an invalid port") from None
    return url


class DeploymentSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One place a model is served from. ``credential_ref`` names the upstream API key in the gateway's
    credential namespace (``UPSTREAM_CREDENTIAL_<NAME>`` or a file of ``AIAAS_UPSTREAM_CREDENTIALS_DIR``);
    the key itself is never stored."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+(?![\s\S])")]
    provider: Provider = "openai"
    upstream_model: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[!-~]+(?![\s\S])")]
    base_url: Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^https?://")] | None = None
    credential_ref: Annotated[str, msgspec.Meta(pattern=CREDENTIAL_REF_PATTERN)] | None = None
    weight: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1
    priority: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    connect_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 3.0
    first_byte_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0
    chunk_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    total_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 600.0
    context_length: _ContextLength | None = None
    enabled: bool = True
    # A PEM file of CA certificates on the gateway's filesystem that an https upstream's certificate is
    # checked against instead of the system's trust store (a private CA); None: the system's trust store.
    ca_bundle: Annotated[str, msgspec.Meta(max_length=4096, pattern=CA_BUNDLE_PATTERN)] | None = None
    # The client wire formats this upstream speaks itself (passed through untranslated); chat always.
    native_apis: Annotated[list[NativeApi], msgspec.Meta(max_length=2)] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.base_url is not None:
            check_base_url(self.base_url)
        if self.native_apis and self.provider != "openai":
            raise ValueError("native_apis applies only to an HTTP upstream (provider openai)")
        if len(set(self.native_apis)) != len(self.native_apis):
            raise ValueError("native_apis lists an API twice")
        if self.ca_bundle is not None and not (self.base_url or "").startswith("https://"):
            raise ValueError("ca_bundle applies only to a deployment with an https:// base_url")
        if self.credential_ref is not None and _LOOKS_LIKE_A_KEY.match(self.credential_ref):
            raise ValueError("credential_ref looks like an API key: put the key in the environment variable "
                             "UPSTREAM_CREDENTIAL_<NAME> (or a file of AIAAS_UPSTREAM_CREDENTIALS_DIR) and "
                             "reference NAME")


class ModelSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A public model name and the deployments serving it."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=MODEL_NAME_PATTERN)]
    owned_by: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "aiaas"
    capabilities: list[Capability] = msgspec.field(default_factory=lambda: ["chat", "completions"])
    context_length: _ContextLength | None = None
    deployments: Annotated[list[DeploymentSpec], msgspec.Meta(min_length=1)]


class ModelUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Replace a model's fields and deployments (``PUT``)."""

    owned_by: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "aiaas"
    capabilities: list[Capability] = msgspec.field(default_factory=lambda: ["chat", "completions"])
    context_length: _ContextLength | None = None
    deployments: Annotated[list[DeploymentSpec], msgspec.Meta(min_length=1)]


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment as cached for the hot path."""

    id: str
    name: str
    provider: str
    upstream_model: str
    base_url: str | None
    credential_ref: str | None
    weight: int
    priority: int
    connect_timeout: float
    first_byte_timeout: float
    chunk_timeout: float
    total_timeout: float
    context_length: int | None
    enabled: bool
    ca_bundle: str | None = None
    native_apis: tuple[str, ...] = ()


class ModelPrice(msgspec.Struct, frozen=True, kw_only=True):
    """A price of a model (USD per million tokens) that spend limits are charged with: a copy of a
    price-book entry, kept here by ``analytics`` (the book's owner), so admission needs no lookup of its
    own. ``deployment`` "" prices every deployment without an entry of its own; ``id`` is the entry's
    price-book version."""

    id: int
    deployment: str = ""
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal
    effective_from: dt.datetime


class CatalogModel(msgspec.Struct, frozen=True, kw_only=True):
    """A model with its deployments, as cached in Redis and returned by the admin API; ``prices`` are
    those spend limits charge (in force now and later, newest first; empty: the model is unpriced)."""

    id: str
    name: str
    owned_by: str
    capabilities: list[str]
    context_length: int | None
    created: int
    managed_by: str
    deployments: list[Deployment]
    prices: list[ModelPrice] = []


class DeploymentHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment of one model and its circuit breaker, as every streamer sees it (in Redis).

    ``breaker``: ``closed`` (in rotation), ``open`` (left out until ``open_until``), ``half_open`` (cooled
    down: one request at a time may probe it), or ``unknown`` while Redis cannot be read."""

    model: str
    deployment: str
    deployment_id: str
    provider: str
    enabled: bool
    weight: int
    priority: int
    breaker: Literal["closed", "open", "half_open", "unknown"]
    consecutive_failures: int
    open_until: dt.datetime | None


class ModelAccess(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which models an organization may use; ``models`` null means every model in the catalog."""

    models: list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]] | None


class OrgModelAccess(msgspec.Struct, frozen=True, kw_only=True):
    """An organization's model-access policy."""

    org_id: str
    models: list[str] | None
    managed_by: str
