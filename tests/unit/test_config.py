from __future__ import annotations

from pathlib import Path

import pytest

from moderation.config import load_settings, parse_settings
from moderation.errors import ConfigError

SECRET = 918273645546372819


def scheme(**fields: object) -> dict[str, object]:
    return {"watermark": {"schemes": [{"name": "s", "vocab_size": 30522, **fields}]}}


def test_demo_config_loads() -> None:
    settings = load_settings(Path(__file__).parents[2] / "moderation" / "data" / "demo.toml")
    assert [s.name for s in settings.watermark.schemes] == ["demo-lefthash"]


def test_transformers_defaults_are_the_defaults() -> None:
    s = parse_settings(scheme()).watermark.schemes[0]
    assert (s.greenlist_ratio, s.bias, s.key, s.seeding_scheme, s.effective_context_width) == (
        0.25,
        2.0,
        15485863,
        "lefthash",
        1,
    )


def test_lm_watermarking_selfhash_defaults_to_context_four() -> None:
    s = parse_settings(scheme(generator="lm-watermarking", seeding_scheme="selfhash")).watermark.schemes[0]
    assert s.effective_context_width == 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"greenlist_ratio": 1.5}, "greenlist_ratio: Input should be less than 1"),
        (
            {"seeding_scheme": "minhash"},
            "seeding_scheme: Input should be 'lefthash', 'selfhash' or 'simple_1' (got 'minhash')",
        ),
        ({"generator": "vllm"}, "generator: Input should be"),
        ({"vocab_size": -3}, "vocab_size: Input should be greater than or equal to 2 (got -3)"),
        ({"seeding_scheme": "simple_1"}, "'simple_1' belongs to lm-watermarking"),
        ({"normalizers": ["nfkc", "rot13"]}, "normalizers.1: Input should be"),
        ({"colour": "green"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_field_value_and_expectation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(scheme(**fields), "cfg.toml")
    assert message in str(info.value)
    assert "cfg.toml" in str(info.value)


@pytest.mark.parametrize("bad_key", ["not-a-number", -SECRET, 2**64 + SECRET, 1.5])
def test_hashing_key_never_appears_in_errors(bad_key: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(scheme(hashing_key=bad_key))
    text = str(info.value)
    assert "hashing_key" in text
    assert str(SECRET) not in text and "not-a-number" not in text


def test_hashing_key_is_hidden_in_repr_and_dumps() -> None:
    settings = parse_settings(scheme(hashing_key=SECRET))
    assert settings.watermark.schemes[0].key == SECRET
    assert str(SECRET) not in repr(settings)
    assert str(SECRET) not in settings.model_dump_json()


def test_duplicate_scheme_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="repeated: \\['s'\\]"):
        parse_settings({"watermark": {"schemes": [{"name": "s", "vocab_size": 10}, {"name": "s", "vocab_size": 10}]}})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_family_budget_is_split_unless_a_scheme_sets_its_own() -> None:
    settings = parse_settings(
        {
            "watermark": {
                "false_positive_rate": 1e-4,
                "schemes": [
                    {"name": "a", "vocab_size": 100},
                    {"name": "b", "vocab_size": 100},
                    {"name": "c", "vocab_size": 100, "false_positive_rate": 1e-6},
                ],
            }
        }
    )
    a, _, c = settings.watermark.schemes
    assert settings.watermark.alpha_for(a) == pytest.approx((1e-4 - 1e-6) / 2)  # c's own target is deducted
    assert settings.watermark.alpha_for(c) == 1e-6
