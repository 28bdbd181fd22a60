"""Dataset readers: each kind turns its source files into one split table (see split.py)."""
