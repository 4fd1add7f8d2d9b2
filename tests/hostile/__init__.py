"""Hostile-client tests: attacks from one loopback client, each asserting the bound that holds."""
