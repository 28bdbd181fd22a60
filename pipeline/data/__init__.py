"""Data sources: dataset readers (each kind turns its source files into one split table, see
:mod:`pipeline.data.split_table`), the demo collection, and archive download/extraction."""
