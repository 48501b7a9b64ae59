"""Small leaf helpers that every layer may use: text, time, JSON, TOML, signals.

This package imports nothing else of mdivicomtools (only `errors`), so anything
may import it without creating a cycle. A helper belongs here once two layers
need it; one definition keeps messages, timestamps and files the same
everywhere.
"""
