"""`mixer test`: rule tests in YAML, evaluated in process against a config directory.

A test file's name ends in ``_test.yaml`` (or ``_test.yml``); the config loader skips such files,
so tests can live next to the rules (``rules/tests/policy_test.yaml``). Each case sends one
request (Mixer attributes for Check or Report, an Envoy ext_authz ``CheckRequest`` or a
rate-limit ``RateLimitRequest`` in JSON form) to a runtime built from the directory, with no
server and no network, and compares the answer with what the case expects. The schema is
``schema.json`` in this package and docs/rule-tests.md.
"""

from mixer.rulestest.cases import Case, TestFileError, is_test_file, load_cases

__all__ = ["Case", "TestFileError", "is_test_file", "load_cases"]
