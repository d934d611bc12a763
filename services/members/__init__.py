"""The members service: the registry of trained members and staff accounts."""
