"""sync-audio: estimate the time offsets between the cameras' audio tracks of a session."""
