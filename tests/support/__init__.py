"""Test support: real infrastructure, Kafka readers, service processes, tokens."""
