"""Unit tests of emulator/ pieces that need no stack (the stack itself is tested in tests/emulator)."""
