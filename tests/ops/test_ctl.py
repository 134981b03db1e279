"""ops/ctl against a running fleet in a subprocess, on both bases, including bad input."""
import struct

import msgpack
import pytest

from messages import codec
from system.admin_client import AdminClient, AdminClientError
from tests.ops.conftest import start_fleet, stop_fleet

TOKEN = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def test_ctl_commands_and_bad_input(tmp_path, base):
    fleet = start_fleet(tmp_path, base, wait_for="0 of 0 bots running")
    try:
        r = fleet.ctl("status")
        assert r.returncode == 0, r.stderr
        assert "root/store" in r.stdout and "running" in r.stdout
        code, out, _ = fleet.ctl_json("status")
        assert code == 0 and out["ok"]
        paths = {a["path"]: a for a in out["result"]["actors"]}
        for svc in ("metrics", "store", "ratelimit", "eventbus", "bots", "control"):
            assert paths[f"root/{svc}"]["state"] == "running"

        # create with bad arguments: clear error, nothing created
        code, out, _ = fleet.ctl_json("create", "Bad Name!", "--token", TOKEN)
        assert code == 1 and "name" in out["error"]
        code, out, _ = fleet.ctl_json("create", "alpha", "--token", "not-a-token")
        assert code == 1 and "token" in out["error"]
        code, out, _ = fleet.ctl_json("create", "alpha", "--token", TOKEN,
                                      "--handler", "no.such.module:Handler")
        assert code == 1 and "handlers[0]" in out["error"]
        code, out, _ = fleet.ctl_json("create", "alpha", "--token", TOKEN,
                                      "--config-json", '{"host": "Not a host"}')
        assert code == 1 and "config.host" in out["error"]
        if base == "inprocess":   # placing on a member host needs thespian conventions
            code, out, _ = fleet.ctl_json("create", "alpha", "--token", TOKEN, "--host", "b")
            assert code == 1 and "needs system.base = 'processes'" in out["error"], out
        # unknown bot
        for cmd in ("start", "stop", "restart", "destroy"):
            code, out, _ = fleet.ctl_json(cmd, "ghost")
            assert code == 1 and "no such bot" in out["error"], (cmd, out)
        # config set/get round trip through the store
        code, out, _ = fleet.ctl_json("config", "set", "greeting", '"hello"')
        assert code == 0
        code, out, _ = fleet.ctl_json("config", "get", "greeting")
        assert code == 0 and out["result"]["value"] == "hello"
        code, out, _ = fleet.ctl_json("config", "get")
        assert code == 0 and out["result"]["config"]["system"]["base"] == base
        code, out, _ = fleet.ctl_json("audit", "--limit", "5")
        assert code == 0 and out["result"]["events"]

        client = fleet.client()
        # unknown command
        with pytest.raises(AdminClientError, match="unknown command"):
            client.call("explode")
        # wrong token
        with pytest.raises(AdminClientError, match="invalid admin token"):
            AdminClient("127.0.0.1", fleet.ports["control"], "0" * 64).call("status")
        r = fleet.ctl("status", env={"TGFLEET_ADMIN_TOKEN": "wrong"})
        assert r.returncode == 1 and "invalid admin token" in r.stderr
        # bad args type
        with pytest.raises(AdminClientError, match="config"):
            client.call("create", config="not a map")
        # oversized frame: refused before it is read
        reply = client.raw(struct.pack(">I", 10_000_000) + b"x" * 100)
        assert not reply["ok"] and "more than the limit" in reply["error"]
        # malformed envelope: valid frame, not our msgpack schema
        reply = client.raw(codec.frame(msgpack.packb({"hello": "world"})))
        assert not reply["ok"] and "malformed" in reply["error"]
        reply = client.raw(codec.frame(b"\xc1\xc1garbage"))
        assert not reply["ok"]
        # the fleet is unchanged and still answers
        code, out, _ = fleet.ctl_json("status")
        assert code == 0
        assert not [a for a in out["result"]["actors"] if a["path"].startswith("root/bots/")]

        # shutdown through ctl: clean exit 0, no process left
        code, out, _ = fleet.ctl_json("shutdown")
        assert code == 0
        fleet.proc.wait(30)
        assert fleet.proc.returncode == 0, fleet.output()
    finally:
        rc, left = stop_fleet(fleet)
        assert not left, f"processes left: {left}"
    # not running any more: exit 2, a clear message
    r = fleet.ctl("status")
    assert r.returncode == 2 and "not running" in r.stderr


def test_sigterm_stops_cleanly(tmp_path):
    fleet = start_fleet(tmp_path, "processes", wait_for="0 of 0 bots running")
    rc, left = stop_fleet(fleet)
    assert rc == 0, fleet.output()
    assert not left
    assert "stopped" in fleet.output()
