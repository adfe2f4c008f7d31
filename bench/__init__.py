"""bench: is there a single best recurrent architecture? Evidence, not folklore."""
