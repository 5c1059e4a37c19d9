"""Running compiled programs: sessions, plans, state and threads."""
