"""The serving app in-process, then the serving image under Docker."""
