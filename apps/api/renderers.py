"""XML output for clients that ask for it with `Accept`; JSON stays the default.

The mapping is plain and lossless for JSON data: an object's keys become child elements (a key
that is not a valid XML name becomes `<item key="...">`), a list's values become `<item>`
elements, null is an empty element with `nil="true"`, booleans are `true` / `false`. The root is
always `<response>`, for answers and error envelopes alike.
"""

import io
import re
from typing import Any
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

ROOT = "response"
ITEM = "item"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
# Characters XML 1.0 cannot carry at all, not even escaped (control characters, lone surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _is_name(key: str) -> bool:
    return bool(_NAME.match(key)) and not key.lower().startswith("xml")


def _write(out: XMLGenerator, name: str, value: Any, attrs: dict[str, str]) -> None:
    if value is None:
        out.startElement(name, AttributesImpl({**attrs, "nil": "true"}))
        out.endElement(name)
        return
    out.startElement(name, AttributesImpl(attrs))
    if isinstance(value, dict):
        for key, child in value.items():
            text_key = str(key)
            if _is_name(text_key):
                _write(out, text_key, child, {})
            else:
                _write(out, ITEM, child, {"key": _text(text_key)})
    elif isinstance(value, list | tuple):
        for child in value:
            _write(out, ITEM, child, {})
    elif isinstance(value, bool):
        out.characters("true" if value else "false")
    else:
        out.characters(_text(str(value)))
    out.endElement(name)


def xml_bytes(data: Any) -> bytes:
    """`data` (JSON-like) as a UTF-8 XML document."""
    buffer = io.StringIO()
    out = XMLGenerator(buffer, encoding="utf-8", short_empty_elements=True)
    out.startDocument()
    _write(out, ROOT, data, {})
    out.endDocument()
    return buffer.getvalue().encode("utf-8")
