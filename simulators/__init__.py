"""Hardware simulators: GPS receivers and collars (more devices later), on real pseudo-terminals."""
