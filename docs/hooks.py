"""MkDocs hooks: pages generated at build time (placeholder)."""
