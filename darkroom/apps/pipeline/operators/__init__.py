"""One file per operator; each registers its step model by name (``base.register_operator``)."""
