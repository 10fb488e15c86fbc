"""Thin front ends: each turns its protocol into a call of policy.evaluate and back."""
