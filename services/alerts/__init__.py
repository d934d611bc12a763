"""The alerts service: finds whom to alert, sends SMS and web alerts, takes replies."""
