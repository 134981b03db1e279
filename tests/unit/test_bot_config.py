"""Bot definitions are checked when the config is read (or at `ctl create`), so a bad value is a
one-line error naming the key instead of a backend that crashes at start."""
import pytest

from system.config import ConfigError, validate_bot

BOT = {"name": "b1", "token": "123456:ABCDEFGHIJKLMNOP"}


def test_defaults_include_the_backlog_bounds():
    from actors.backends.base import DEFAULTS
    out = validate_bot(dict(BOT))
    assert out["update_backlog_high"] == 128 and out["update_backlog_low"] == 32
    # a bot from the config and a backend started without the keys get the same bounds
    assert (out["update_backlog_high"], out["update_backlog_low"]) == \
        (DEFAULTS["update_backlog_high"], DEFAULTS["update_backlog_low"])
    assert validate_bot(dict(BOT, update_backlog_high=8, update_backlog_low=0))[
        "update_backlog_low"] == 0


def test_fast_updates_default_on_as_in_the_backend_and_can_be_switched_off():
    from actors.backends.base import DEFAULTS
    assert validate_bot(dict(BOT))["fast_updates"] is True is DEFAULTS["fast_updates"]
    assert validate_bot(dict(BOT, fast_updates=False))["fast_updates"] is False


@pytest.mark.parametrize("extra, message", [
    ({"update_backlog_high": 0}, "update_backlog_high: expected an integer 1..10000000"),
    ({"update_backlog_high": "many"}, "update_backlog_high: expected an integer"),
    ({"update_backlog_low": 128}, "update_backlog_low: expected an integer from 0 to below "
                                 "update_backlog_high (128), got 128"),
    ({"update_backlog_low": -1}, "update_backlog_low: expected an integer from 0"),
    ({"update_backlog_low": True}, "update_backlog_low: expected an integer from 0"),
    ({"queue_max": 0}, "queue_max: expected an integer 1..10000000"),
    ({"fast_updates": "yes"}, "fast_updates: expected true or false, got 'yes'"),
])
def test_bad_values_name_the_key(extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_bot(dict(BOT, **extra), "bots[0]")
