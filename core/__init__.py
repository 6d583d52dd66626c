"""The bottom layer: errors, the HTTP client policy, secrets and identities.

Every other package may import from ``core``; ``core`` imports nothing from the project.
See docs/ARCHITECTURE.md, "Layers".
"""
