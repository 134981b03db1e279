"""Test doubles. Fakes here stand in for services no test can reach (see each module)."""
