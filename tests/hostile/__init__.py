"""Hostile-client tests: attacks on a real mixer over loopback, each bounded in count and time."""
