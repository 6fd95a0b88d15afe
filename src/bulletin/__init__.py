"""bulletin: a multilingual newsletter tool for organisations that publish news in several languages."""

__version__ = "0.1.0"
