"""Tests of the deploy files (compose, Kubernetes, Dockerfile, Envoy config) and the demo app."""
