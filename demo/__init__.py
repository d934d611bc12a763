"""`make demo` (`python -m demo`): a believable data set and a drill in Fier, through the
public APIs of a running stack only (members, alerts' SMS webhook, dispatch)."""
