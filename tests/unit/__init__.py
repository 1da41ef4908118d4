"""Pure logic and AWS call shapes: one folder per room of tasks/, plus flows/ and emulator/; the helpers
the rooms share sit here."""
