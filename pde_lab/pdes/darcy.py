"""Darcy (being written)."""
