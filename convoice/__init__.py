"""Con Voice: Creative Commons video in, versioned self-labelled speaker datasets out."""

__version__ = "0.1.0"
