"""The [store] section: checked where it is read, and handed to the store actor."""
import re

import pytest

from actors.root import root_children
from system.config import ConfigError, load_config


def store_args(cfg):
    return next(spec for spec in root_children(cfg) if spec.id == "store").args


def test_record_delay_defaults_and_reaches_the_store():
    cfg = load_config(None, env={})
    assert cfg["store"]["record_delay_s"] == 0.2
    assert store_args(cfg)["record_delay_s"] == 0.2
    cfg = load_config(None, env={"TGFLEET_STORE_RECORD_DELAY_S": "0"})
    assert store_args(cfg)["record_delay_s"] == 0.0          # 0: every record at once


@pytest.mark.parametrize("env, message", [
    ({"TGFLEET_STORE_RECORD_DELAY_S": "-1"}, "store.record_delay_s: expected 0 to 10"),
    ({"TGFLEET_STORE_RECORD_DELAY_S": "60"}, "store.record_delay_s: expected 0 to 10"),
    ({"TGFLEET_STORE_RECORD_DELAY_S": "soon"}, "store.record_delay_s (from environment)"),
    ({"TGFLEET_STORE_DEDUP_MAX": "0"}, "store.dedup_max: expected 1 to"),
])
def test_bad_store_settings_are_refused_with_the_key_named(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, env=env)
