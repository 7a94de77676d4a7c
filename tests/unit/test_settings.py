"""Settings are validated at cold start; a bad one names the variable."""

from __future__ import annotations

import pytest

from ptc_sync.settings import SettingsError, load_settings


def test_defaults_and_parsing() -> None:
    s = load_settings(
        {
            "AWS_REGION": "eu-west-1",
            "PTC_DRY_RUN": "true",
            "PTC_RULE_PREFIXES": "docker-hub, quay ,",
            "PTC_TAG_EXCLUDE": "*-rc*",
            "PTC_PULLED_WITHIN_DAYS": "30",
            "PTC_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:ptc-sync-ReportTopic-AbC",
        }
    )
    assert s.dry_run is True
    assert s.rule_prefixes == ("docker-hub", "quay")
    assert s.tag_exclude == ("*-rc*",)
    assert s.pulled_within_days == 30
    assert s.region == "eu-west-1"
    assert s.keep_generations == 1
    assert load_settings({"PTC_TOPIC_ARN": ""}).topic_arn is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PTC_PULLED_WITHIN_DAYS": "-1"}, "PTC_PULLED_WITHIN_DAYS='-1'"),
        ({"PTC_DRY_RUN": "sometimes"}, "PTC_DRY_RUN='sometimes'"),
        ({"PTC_RULE_PREFIXES": "Docker Hub"}, "PTC_RULE_PREFIXES"),
        ({"PTC_TOPIC_ARN": "https://example.com/hook"}, "PTC_TOPIC_ARN"),
        ({"PTC_KEEP_GENERATIONS": "eleven"}, "PTC_KEEP_GENERATIONS"),
        ({"PTC_DRYRUN": "true"}, "PTC_DRYRUN"),  # a typo is an error, not a silent default
    ],
)
def test_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match="invalid settings") as info:
        load_settings(env)
    assert named in str(info.value)
