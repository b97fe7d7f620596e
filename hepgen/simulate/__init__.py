"""Reference producers: the expensive simulators the surrogates learn from."""
