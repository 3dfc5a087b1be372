"""The console scripts: thin shells that parse arguments, call library code and map errors to exit codes."""
