"""How long the echo fleet's light-load step lasts (bench.workloads.light_window)."""
from __future__ import annotations

from bench.__main__ import parse_args, params
from bench.workloads import light_window


def p(light_s=5.0, samples=200, rate=1.0):
    return {"light_s": light_s, "light_samples": samples, "light_rate_per_bot": rate}


def test_few_bots_get_a_longer_window_for_enough_samples():
    assert light_window(p(), 10) == 20.0          # 10 msg/s: 200 messages need 20 s


def test_many_bots_keep_the_configured_window():
    assert light_window(p(), 50) == 5.0           # 250 messages in 5 s already


def test_no_minimum_keeps_the_configured_window():
    assert light_window(p(samples=0), 10) == 5.0
    assert light_window({"light_s": 3.0, "light_rate_per_bot": 1.0}, 10) == 3.0


def test_defaults_default_mode_200_quick_or_explicit_window_none():
    assert params(parse_args([]))["light_samples"] == 200
    assert params(parse_args(["--quick"]))["light_samples"] == 0
    assert params(parse_args(["--light-samples", "50"]))["light_samples"] == 50
    assert params(parse_args(["--light-seconds", "1"]))["light_samples"] == 0
    assert params(parse_args(["--light-seconds", "1", "--light-samples", "9"]))["light_samples"] == 9
