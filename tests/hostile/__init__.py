"""Hostile-client tests: each runs an attack from issue 20 on loopback, bounded in count and time,
and asserts the bound that holds it."""
