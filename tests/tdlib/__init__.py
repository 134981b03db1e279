"""TDLib layer tests: against FakeTdJson, and the real libtdjson in a loopback-only netns."""
