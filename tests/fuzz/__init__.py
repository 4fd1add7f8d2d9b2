"""Coverage-guided fuzz harnesses (atheris) and their bounded runs in the test suite."""
