"""Rendering only: bytes become GiB strings here and nowhere else."""
