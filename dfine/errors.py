"""User-facing errors."""

from typing import Any, Mapping, Optional, Sequence


class DfineError(Exception):
    """A user-facing error: its message is one line that says what is wrong and what to do."""


def keyword_hints(func: Any = None, *, name: Optional[str] = None, also: Sequence[str] = (),
                  aliases: Optional[Mapping[str, str]] = None) -> Any:
    """``func`` whose unknown keyword arguments are a :class:`DfineError` naming the closest one it takes
    (``dfine.train(epoch=2)``), as the command line says "did you mean --epochs?".

    Used bare (``@keyword_hints``) or with options: ``name``: what the message calls it (default
    ``dfine.QUALNAME``); ``also``: keywords it takes through ``**kwargs``; ``aliases``: another name's
    keyword -> the one meant (``{"size": "tile"}``). On a class (a dataclass), its ``__init__`` is checked."""
    # a walk's dfine.train(epoch=2) was a bare TypeError
    if func is None:
        return lambda f: keyword_hints(f, name=name, also=also, aliases=aliases)
    if isinstance(func, type):
        func.__init__ = keyword_hints(func.__init__, name=name or f"dfine.{func.__qualname__}", also=also,
                                      aliases=aliases)
        return func
    import functools
    import inspect

    takes = [k for k, p in inspect.signature(func).parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k != "self"]
    takes += [k for k in also if k not in takes]
    said = name or f"dfine.{func.__qualname__.replace('.__init__', '')}"

    @functools.wraps(func)
    def checked(*args, **kwargs):
        unknown = [k for k in kwargs if k not in takes]
        if unknown:
            raise DfineError(unknown_keyword(said, unknown[0], takes, aliases))
        return func(*args, **kwargs)
    return checked


def unknown_keyword(name: str, given: str, takes: Sequence[str], aliases: Optional[Mapping[str, str]] = None) -> str:
    """``dfine.X() takes no given=; did you mean K=?``: ``K`` the alias of ``given``, a shorter or longer
    form of it (``confidence=`` is ``conf=``, not ``config=``) or the closest of ``takes``; else the list."""
    import difflib

    close = [aliases[given]] if aliases and given in aliases else [
        t for t in takes if given.startswith(t) or t.startswith(given)] or difflib.get_close_matches(given, takes, 1)
    hint = f"did you mean {close[0]}=?" if close else f"it takes {', '.join(takes)}"
    return f"{name}() takes no {given}=; {hint}"

