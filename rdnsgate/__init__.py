"""rdnsgate: keep mail from hosts with broken DNS out, and tell senders what to fix."""

__version__ = "0.1.0"
