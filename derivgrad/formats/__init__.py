"""Output formats beyond LaTeX and Markdown, each turning the format-agnostic document model
(:class:`derivgrad.document.Doc`) or the derivation itself into one kind of reader's text:
:mod:`.html` (a standalone page, MathML), :mod:`.text` (Unicode for a terminal),
:mod:`.json` (the derivation as data, schema in ``derivation.schema.json``)."""
