"""The web console: one origin and one sign-in for coordinators, admins and authorities.

A backend-for-frontend that owns no data: every page calls the members, alerts and
dispatch HTTP APIs with the signed-in user's bearer token (docs/console.md).
"""
