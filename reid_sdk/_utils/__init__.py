"""Small shared pieces: optional imports with install hints, the one atomic file write, the one progress idiom."""
