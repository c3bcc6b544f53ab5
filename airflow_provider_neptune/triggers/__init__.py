"""Neptune triggers: the one that polls a run condition for the deferrable sensors."""
