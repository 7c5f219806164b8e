"""CI gates on a snapshot: parse expressions, evaluate them, write JUnit/Markdown/JSON."""
