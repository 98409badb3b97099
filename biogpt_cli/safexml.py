"""Secure XML reading for every XML reader (PubMed, BioC, JATS): defusedxml's parser, streaming.

An entity declaration (billion laughs, external entities: `<!ENTITY x SYSTEM "file:///etc/passwd">`)
or an external reference refuses the whole file with one InputDataError saying why; a DOCTYPE
that only names a DTD (PubMed and JATS files all carry one) is fine, and nothing is ever fetched.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from biogpt.model.errors import InputDataError


def iterparse_stream(stream: Any, name: str, tag: str) -> Iterator[ET.Element]:
    """`_iterparse` over any binary stream (`name` for messages), by defusedxml's parser: an
    entity declaration (billion laughs, external entities) or an external reference refuses
    the file with InputDataError; a DOCTYPE naming a DTD is fine (nothing is fetched)."""
    from defusedxml import DefusedXmlException  # only here: keeps CLI start-up light
    from defusedxml.ElementTree import DefusedXMLParser

    # forbid_dtd stays off: PubMed and JATS files carry a DOCTYPE with a public identifier
    parser = ET.XMLPullParser(events=("start", "end"), _parser=DefusedXMLParser(target=ET.TreeBuilder(), forbid_dtd=False))
    root: ET.Element | None = None
    try:
        while True:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            parser.feed(chunk)
            for event, elem in parser.read_events():
                if event == "start" and root is None:
                    root = elem
                elif event == "end" and elem.tag == tag:
                    yield elem
                    elem.clear()
                    if root is not None:
                        root.clear()
        parser.close()
    except ET.ParseError as exc:
        raise InputDataError(f"{name}: malformed XML ({exc})") from None
    except DefusedXmlException as exc:
        raise InputDataError(f"{name}: refused: {_xml_refusal(exc)}") from None


def _xml_refusal(exc: Exception) -> str:
    """Why defusedxml refused a file, in words (its own message is its repr)."""
    name, sysid = getattr(exc, "name", None), getattr(exc, "sysid", None)
    named = f" (entity {name!r}" + (f", SYSTEM {sysid!r}" if sysid else "") + ")" if name else f" ({sysid!r})" if sysid else ""
    kind = type(exc).__name__
    if kind == "EntitiesForbidden":
        return f"XML entity declarations are not allowed{named}: entity expansion and external entities are unsafe"
    if kind == "ExternalReferenceForbidden":
        return f"XML external references are not allowed{named}: nothing is fetched"
    if kind == "DTDForbidden":
        return "an inline XML DTD is not allowed"
    return f"unsafe XML ({kind})"
