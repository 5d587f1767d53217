"""References to objects Darkroom stores itself (inputs moved out of request bodies, uploads)."""

OBJECT_REF_PREFIX = "darkroom-object:"


def object_ref_key(value: str) -> str | None:
    """The object key of a reference, or None when ``value`` is not one."""
    if value.startswith(OBJECT_REF_PREFIX):
        return value[len(OBJECT_REF_PREFIX):]
    return None
