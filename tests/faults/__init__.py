"""Fault injection: the platform breaks its own infrastructure and services on purpose,
with an emergency of 2,000 selected members in flight (see conftest.py for the sizes)."""
