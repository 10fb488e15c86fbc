"""The fleet monitor: scheduled re-checks of sending servers, their states, drift and alerts."""
