"""User-facing errors."""


class DfineError(Exception):
    """A user-facing error: its message is one line that says what is wrong and what to do."""


def keyword_hints(func):
    """``func`` whose unknown keyword arguments are a :class:`DfineError` naming the closest one it takes
    (``dfine.train(epoch=2)``: a walk's bare ``TypeError``, where the command line says "did you mean --epochs?")."""
    import difflib
    import functools
    import inspect

    takes = [name for name, p in inspect.signature(func).parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"]

    @functools.wraps(func)
    def checked(*args, **kwargs):
        unknown = [k for k in kwargs if k not in takes]
        if unknown:
            given = unknown[0]  # a shorter or longer form first: confidence= is conf=, not config=
            close = [t for t in takes if given.startswith(t) or t.startswith(given)] or difflib.get_close_matches(
                given, takes, 1)
            hint = f"did you mean {close[0]}=?" if close else f"it takes {', '.join(takes)}"
            raise DfineError(f"dfine.{func.__qualname__.replace('.__init__', '')}() takes no {unknown[0]}=; {hint}")
        return func(*args, **kwargs)
    return checked
