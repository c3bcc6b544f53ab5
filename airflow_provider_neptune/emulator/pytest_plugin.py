"""pytest plugin: the neptune_emulator fixture."""
