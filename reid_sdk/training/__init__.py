"""Unsupervised training: clustering engine, lookup-table memory, trainer (needs torch)."""
