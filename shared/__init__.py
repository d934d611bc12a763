"""Muster's shared library: event envelope and models, topics, outbox, consumers, auth."""
