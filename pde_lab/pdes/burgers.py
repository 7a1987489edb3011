"""Burgers (being written)."""
