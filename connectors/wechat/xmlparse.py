"""WeChat's XML into a dict, fast and safely.

The platform's XML is UTF-8 and flat (``<xml><ToUserName>…</ToUserName>…</xml>``; a few events
nest a few levels, such as SendPicsInfo/PicList/item). It is read with expat directly, building
the dict as the elements end: for these small documents that is as fast as ElementTree's C
parser, and it lets the parser itself refuse what the platform never sends:

* a document type declaration, seen by expat after it has decoded the document (whatever its
  encoding: a byte scan for ``<!`` misses a UTF-16 ``<\\0!\\0``), so no entity is ever declared,
  let alone expanded;
* elements nested deeper than :data:`MAX_DEPTH`: refused as they open, with no recursion, so a
  push nested thousands deep costs what its bytes cost and never reaches Python's recursion limit.

Fields are strings; a repeated element becomes a list and an element with children a dict, as
the platform's item lists are. :func:`text` reads a field that must be a string, and refuses a
nested or repeated one instead of turning it into its ``repr``.
"""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

# The root counts as 1. The platform's deepest push (a copyright-check event:
# xml/CopyrightCheckResult/ResultList/item/…) is 5 deep.
MAX_DEPTH = 8


class NotWeChatXml(ValueError):
    pass


class _Builder:
    """expat's handlers: a stack of open elements, each a [tag, children dict or None, text parts]."""

    __slots__ = ("root", "stack")

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []
        self.root: tuple[str, Any] | None = None

    def start(self, tag: str, _attrs: Any) -> None:
        stack = self.stack
        if len(stack) >= MAX_DEPTH:
            raise NotWeChatXml(f"elements nested deeper than {MAX_DEPTH}")
        if stack and stack[-1][1] is None:
            stack[-1][1] = {}
        stack.append([tag, None, []])

    def data(self, text: str) -> None:
        if self.stack:  # (expat reports nothing but whitespace outside the root)
            self.stack[-1][2].append(text)

    def end(self, _tag: str) -> None:
        tag, children, parts = self.stack.pop()
        # As ElementTree read it: an element with children is its children; a leaf is its text.
        value = children if children is not None else "".join(parts)
        if not self.stack:
            self.root = (tag, value)
            return
        out = self.stack[-1][1]
        previous = out.get(tag)
        if previous is None:
            out[tag] = value
        elif isinstance(previous, list):  # (a value is text or a dict: a list is only ever this)
            previous.append(value)  # in place: 16,000 repeats in one push stay linear
        else:  # a repeated element: a list, as the platform's item lists are
            out[tag] = [previous, value]


def _refuse_declaration(*_args: Any) -> None:
    raise NotWeChatXml("declarations (DOCTYPE, ENTITY) are not accepted")


def parse_xml(raw: bytes | str) -> dict[str, Any]:
    """The children of the root ``<xml>`` element; raises :class:`NotWeChatXml` for anything else."""
    builder = _Builder()
    parser = expat.ParserCreate()
    parser.buffer_text = True  # one data call per text run, CDATA sections included
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    # Refused at the declaration's start, before anything in it is read. A document without one
    # can still name an entity, which expat then reports as undefined: not well-formed.
    parser.StartDoctypeDeclHandler = _refuse_declaration
    parser.EntityDeclHandler = _refuse_declaration
    parser.UnparsedEntityDeclHandler = _refuse_declaration
    try:
        parser.Parse(raw, True)
    except NotWeChatXml:
        raise
    except (expat.ExpatError, ValueError):  # ValueError: an encoding expat cannot read
        raise NotWeChatXml("not well-formed XML") from None
    if builder.root is None or builder.root[0] != "xml":
        raise NotWeChatXml("the root element is not <xml>")
    value = builder.root[1]
    return value if isinstance(value, dict) else {}


def text(data: dict[str, Any], key: str) -> str:
    """A field that must be text ("" when absent); a nested or repeated one is refused."""
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotWeChatXml(f"{key} must be text, not nested or repeated elements")
    return value
