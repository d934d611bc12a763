"""The dispatch service: emergencies, the live board, escalation, authority summaries."""
