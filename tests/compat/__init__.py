"""Wire-compatibility tests against Envoy's own generated code, run in an isolated venv."""
