"""`hat pipeline`: the whole HAT method on this machine, resumable stage by stage."""
