"""Muster's three services: members, alerts, dispatch."""
