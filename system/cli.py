"""`tgfleet` command line: `tgfleet run` launches a fleet, `tgfleet ctl ...` operates one.

ctl prints human-readable tables by default and JSON with `--json`; it exits non-zero on any
failure (1: the fleet refused the request, 2: the fleet is not running / cannot be reached).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from system.admin_client import AdminClient, AdminClientError, NotRunning, read_token
from system.config import ConfigError, load_config


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    line = "  ".join(c.upper().ljust(widths[c]) for c in columns)
    out = [line]
    for r in rows:
        out.append("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))
    return "\n".join(out)


def _uptime(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render(command: str, result: dict) -> str:
    if command == "status":
        rows = []
        for r in result["actors"]:
            rows.append(dict(r, uptime=_uptime(r["uptime_s"]) if r["state"] == "running" else "-",
                             last_error=(r["last_error"] or "")[:60]))
        bots = [r for r in result["actors"] if r["path"].count("/") == 2
                and r["path"].startswith("root/bots/")]
        up = sum(1 for b in bots if b["state"] == "running")
        columns = ["path", "kind", "state", "restarts", "uptime", "pid", "info", "last_error"]
        if any(r.get("host") for r in rows):   # a fleet spread over hosts: where each one runs
            columns.insert(6, "host")
        return (_table(rows, columns) + f"\n\n{up} of {len(bots)} bots running")
    if command == "audit":
        rows = [dict(e, time=time.strftime("%H:%M:%S", time.localtime(e["ts"])),
                     reason=e["reason"][:70]) for e in result["events"]]
        return _table(rows, ["time", "event", "path", "reason"])
    if command == "config-get" and "config" in result:
        return json.dumps(result["config"], indent=2, sort_keys=True)
    return "\n".join(f"{k}: {v}" for k, v in result.items())


def _bot_config_from(args) -> dict:
    cfg = {}
    if args.config_json:
        try:
            cfg = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json is not valid JSON: {exc}") from None
    cfg["name"] = args.name
    for key in ("library", "token", "phone", "api_id", "api_hash"):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    if args.kind:
        cfg["account_kind"] = args.kind
    if getattr(args, "bot_host", None):
        cfg["host"] = args.bot_host
    if args.handler:
        cfg["handlers"] = [{"type": h} for h in args.handler]
    if args.disabled:
        cfg["enabled"] = False
    return cfg


def ctl_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tgfleet ctl", description="operate a running fleet")
    p.add_argument("--config", help="the fleet's config file (to find its port and token)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--token-file", default=None)
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.add_argument("--timeout", type=float, default=30.0)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="every actor: state, restarts, uptime, last error")
    sub.add_parser("ping", help="is the fleet up?")
    c = sub.add_parser("create", help="create a bot (and start it)")
    c.add_argument("name")
    c.add_argument("--library", choices=["telethon", "pyrogram", "tdlib"])
    c.add_argument("--kind", choices=["bot", "user"])
    c.add_argument("--token")
    c.add_argument("--phone")
    c.add_argument("--api-id", dest="api_id", type=int)
    c.add_argument("--api-hash", dest="api_hash")
    c.add_argument("--host", dest="bot_host", metavar="HOST",
                   help="run it on this member host (its system.host; processes base)")
    c.add_argument("--handler", action="append", help="echo, autoreply, forward, relay or a "
                   "dotted path; repeat for several")
    c.add_argument("--config-json", help="the whole bot config as JSON (flags override it)")
    c.add_argument("--disabled", action="store_true", help="create without starting")
    for name in ("start", "stop", "restart", "destroy"):
        sub.add_parser(name, help=f"{name} a bot").add_argument("name")
    lg = sub.add_parser("login", help="log a user account in (prompts for the code)")
    lg.add_argument("name")
    lg.add_argument("--code", help="the login code (otherwise prompted)")
    lg.add_argument("--status", action="store_true", help="only show the login state")
    cg = sub.add_parser("config", help="config get [KEY] | config set KEY VALUE")
    cg.add_argument("op", choices=["get", "set"])
    cg.add_argument("key", nargs="?")
    cg.add_argument("value", nargs="?")
    au = sub.add_parser("audit", help="lifecycle events: start, stop, crash, restart, ...")
    au.add_argument("--limit", type=int, default=30)
    sub.add_parser("shutdown", help="stop the fleet cleanly")
    args = p.parse_args(argv)

    def fail(msg: str, code: int) -> int:
        if args.json:
            print(json.dumps({"ok": False, "error": msg}))
        else:
            print(f"error: {msg}", file=sys.stderr)
        return code

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return fail(str(exc), 2)
    host = args.host or cfg["system"]["bind_host"]
    port = args.port or cfg["control"]["port"]
    try:
        token = read_token(args.token_file or cfg["control"]["token_file"])
        client = AdminClient(host, port, token, timeout=args.timeout)
        command, call_args = args.command, {}
        if command == "create":
            call_args = {"config": _bot_config_from(args)}
        elif command in ("start", "stop", "restart", "destroy"):
            call_args = {"name": args.name}
        elif command == "audit":
            call_args = {"limit": args.limit}
        elif command == "config":
            if args.op == "get":
                command, call_args = "config-get", ({"key": args.key} if args.key else {})
            else:
                if args.key is None or args.value is None:
                    return fail("usage: ctl config set KEY VALUE", 1)
                try:
                    value = json.loads(args.value)
                except json.JSONDecodeError:
                    value = args.value
                command, call_args = "config-set", {"key": args.key, "value": value}
        elif command == "login":
            state = client.call("login", name=args.name)
            if state["state"] == "awaiting_code" and not args.status:
                code = args.code
                if code is None:
                    if not sys.stdin.isatty():
                        return fail("a login code is needed: pass --code CODE (or run ctl "
                                    "login in a terminal to be prompted)", 1)
                    try:
                        code = input(f"login code sent to {state.get('phone') or 'the account'}"
                                     ": ")
                    except EOFError:
                        return fail("no login code entered", 1)
                call_args = {"name": args.name, "code": code.strip()}
            else:
                call_args = {"name": args.name}
        result = client.call(command, **call_args)
    except NotRunning as exc:
        return fail(str(exc), 2)
    except (AdminClientError, ConfigError, ValueError, OSError) as exc:
        return fail(str(exc), 1)
    if args.json:
        print(json.dumps({"ok": True, "result": result}, default=str))
    else:
        print(render(command, result))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: tgfleet run [--config FILE] | tgfleet member --config FILE | "
              "tgfleet ctl COMMAND ... (tgfleet ctl --help)")
        return 0 if argv else 2
    if argv[0] == "ctl":
        return ctl_main(argv[1:])
    if argv[0] == "run":
        from system.launcher import main as run_main
        return run_main(argv[1:])
    if argv[0] == "member":
        from system.member import main as member_main
        return member_main(argv[1:])
    print(f"unknown command {argv[0]!r}: use run, member or ctl", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
