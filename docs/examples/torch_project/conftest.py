"""Nothing here: the fixtures come from the installed remote-cache package (pytest11)."""
